//! `rcache verify` checks every blob against its name and every entry against its blobs: it
//! finds a truncated blob and a flipped byte (non-zero exit, each blob named), and `--repair`
//! removes the entries that depend on them, after which the store verifies clean and the next
//! build compiles those crates again, then hits.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;

use crate::harness::{
    LIBS, Sandbox, expected_output, rlib_blob, run_command, truncate_to_half, verify_clean,
};

/// `rcache verify` finds a truncated blob (non-zero exit), `--repair` removes what depends on
/// it, after which the store verifies clean and the next build recompiles that crate.
#[test]
fn verify_reports_a_truncated_blob_and_repair_makes_the_store_clean() {
    let sb = Sandbox::new();
    sb.cold_build();
    let blob = rlib_blob(&sb, "demo_lib");
    sb.clean();
    verify_clean(&sb);

    truncate_to_half(&blob);
    let (status, stdout, stderr) = run_command(&mut sb.rcache(&["verify"]), "rcache verify");
    assert!(
        !status.success(),
        "verify passed with a truncated blob\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    sb.rcache_ok(&["verify", "--repair"]);
    verify_clean(&sb);

    let rebuild = sb.build();
    rebuild.assert_hit("demo_leaf");
    // The repaired entry is gone: compiled again (whether it is stored again is not this
    // test's concern).
    let lib = rebuild.event("demo_lib").expect("demo_lib compiled");
    assert_eq!(lib["outcome"], "miss", "{}", rebuild.describe_events());
    assert_eq!(sb.run_bin(), expected_output(&[]));
}

#[test]
fn verify_finds_a_truncated_blob_and_a_flipped_byte_and_repair_keeps_builds_green() {
    let sb = Sandbox::new();
    sb.cold_build();
    let truncated = rlib_blob(&sb, "demo_leaf");
    let flipped = rlib_blob(&sb, "demo_lib");
    sb.clean();
    truncate_to_half(&truncated);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&flipped)
        .unwrap();
    let middle = fs::metadata(&flipped).unwrap().len() / 2;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, middle).unwrap();
    file.write_all_at(&[byte[0] ^ 0x01], middle).unwrap();
    drop(file);

    let (status, stdout, _) = run_command(&mut sb.rcache(&["verify"]), "rcache verify");
    assert!(
        !status.success(),
        "verify passed a damaged store:\n{stdout}"
    );
    for blob in [&truncated, &flipped] {
        let name = blob.file_name().unwrap().to_str().unwrap();
        assert!(
            stdout
                .lines()
                .any(|line| line.contains(name) && line.contains("does not match")),
            "{} not reported:\n{stdout}",
            blob.display()
        );
    }
    let repaired = sb.rcache_ok(&["verify", "--repair"]);
    assert!(
        repaired.contains("repaired: removed 2 entries"),
        "{repaired}"
    );
    verify_clean(&sb);

    let rebuild = sb.build();
    for lib in LIBS {
        rebuild.assert_stored_miss(lib);
    }
    assert_eq!(sb.run_bin(), expected_output(&[]));
    sb.clean();
    let again = sb.build();
    for lib in LIBS {
        again.assert_hit(lib);
    }
}
