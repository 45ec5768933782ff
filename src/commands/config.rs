//! `rcache config`: the effective settings and where each value came from.

use crate::config::Config;

pub fn show(config: &Config) {
    match &config.config_file {
        Some(path) if path.exists() => println!("config file: {} (read)", path.display()),
        Some(path) => println!("config file: {} (absent)", path.display()),
        None => println!("config file: none"),
    }
    println!();
    let rows = config.rows();
    let env_width = rows.iter().map(|row| row.0.len()).max().unwrap_or(0);
    let value_width = rows.iter().map(|row| row.2.len()).max().unwrap_or(0);
    println!(
        "{:<env_width$}  {:<value_width$}  source",
        "setting", "value"
    );
    for (env, toml_key, value, source) in rows {
        println!("{env:<env_width$}  {value:<value_width$}  {source}  [toml: {toml_key}]");
    }
    for warning in &config.warnings {
        println!("warning: {warning}");
    }
}
