//! `@argfile`s are expanded before the invocation is typed: a compile whose arguments come
//! from a file is cached, and it is the same compile as one with the arguments inline.

use std::fs;

use crate::harness::{Sandbox, leaf_rustc_args};

#[test]
fn argfile_compile_shares_the_entry_of_the_inline_compile() {
    let sb = Sandbox::new();
    let inline_out = sb.root.join("out-inline");
    sb.compile_leaf_directly(&inline_out)
        .assert_stored_miss("demo_leaf");

    // rustc's argfile format: one argument per line.
    let file_out = sb.root.join("out-argfile");
    fs::create_dir_all(&file_out).unwrap();
    let argfile = sb.root.join("leaf.args");
    fs::write(&argfile, leaf_rustc_args(&file_out).join("\n")).unwrap();
    let via_file = sb.rcache_rustc(&[format!("@{}", argfile.display())], &[]);
    assert!(via_file.status.success(), "{}", via_file.stderr);
    via_file.assert_hit("demo_leaf");
    for name in [
        "libdemo_leaf-0123456789abcdef.rlib",
        "libdemo_leaf-0123456789abcdef.rmeta",
    ] {
        assert_eq!(
            fs::read(inline_out.join(name)).unwrap(),
            fs::read(file_out.join(name)).unwrap(),
            "{name}"
        );
    }
}
