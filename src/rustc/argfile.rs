//! Expansion of rustc `@path` argument files: one argument per line, as rustc reads them.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Replaces every `@path` argument by the lines of that file. `@shell:path` (unstable, shell
/// quoting) is refused with an error, which the caller turns into a passthrough.
pub fn expand(args: &[OsString]) -> io::Result<Vec<OsString>> {
    let mut expanded = Vec::with_capacity(args.len());
    for arg in args {
        let bytes = arg.as_bytes();
        match bytes.strip_prefix(b"@") {
            Some(rest) if rest.starts_with(b"shell:") => {
                return Err(io::Error::other("@shell: argfiles are not supported"));
            }
            Some(rest) => {
                let path = Path::new(std::ffi::OsStr::from_bytes(rest));
                let text = std::fs::read_to_string(path)?;
                expanded.extend(text.lines().map(OsString::from));
            }
            None => expanded.push(arg.clone()),
        }
    }
    Ok(expanded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("args");
        std::fs::write(&file, "--crate-name\nfoo\n--cfg\nfeature=\"a b\"\n").unwrap();
        let args = vec![
            OsString::from("src/lib.rs"),
            OsString::from(format!("@{}", file.display())),
        ];
        let expanded = expand(&args).unwrap();
        assert_eq!(
            expanded,
            vec![
                "src/lib.rs",
                "--crate-name",
                "foo",
                "--cfg",
                "feature=\"a b\""
            ]
        );
    }

    #[test]
    fn missing_argfile_is_an_error() {
        assert!(expand(&[OsString::from("@/nonexistent/args")]).is_err());
    }
}
