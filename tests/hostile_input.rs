//! Property tests: random bytes and random argv fed to the parsers rcache runs on input it does
//! not control (rustc's and gcc's dep-info, rustc and C compiler argv, cargo's build-script
//! directives, the index's encoded records, the remote's envelopes). None may panic: bad input is a reason to pass
//! through or a decode error, never a crash of the wrapper (README.md, "Faults").

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use proptest::prelude::*;

use rcache::remote::layout;
use rcache::store::entry::{self, Entry, Manifest};
use rcache::wrapper::build_script::directives::Directives;

/// Arguments drawn from pieces real argv is made of, so that parsers get past their first
/// checks, mixed with arbitrary bytes.
fn argv() -> impl Strategy<Value = Vec<OsString>> {
    let piece = prop_oneof![
        Just("--crate-name".to_string()),
        Just("--crate-type".to_string()),
        Just("--emit=dep-info,metadata,link".to_string()),
        Just("--out-dir".to_string()),
        Just("-C".to_string()),
        Just("-L".to_string()),
        Just("--extern".to_string()),
        Just("--cfg".to_string()),
        Just("-c".to_string()),
        Just("-o".to_string()),
        Just("-MD".to_string()),
        Just("-MF".to_string()),
        Just("-I".to_string()),
        Just("src/lib.rs".to_string()),
        Just("a.c".to_string()),
        Just("@".to_string()),
        "[ -~]{0,12}",
    ];
    let arg = prop_oneof![
        3 => piece.prop_map(OsString::from),
        1 => proptest::collection::vec(any::<u8>(), 0..16).prop_map(OsString::from_vec),
    ];
    proptest::collection::vec(arg, 0..24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn dep_info_parser_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let parsed = rcache::depinfo::parse(&bytes);
        // Whatever it finds is made of the input's bytes: never more inputs than bytes.
        prop_assert!(parsed.inputs.len() <= bytes.len());
    }

    #[test]
    fn dep_info_parser_takes_makefile_like_text(text in "([a-z/.\\\\ :$#\\n]|env-dep:|# ){0,200}") {
        rcache::depinfo::parse(text.as_bytes());
    }

    #[test]
    fn rustc_argv_classifier_takes_any_argv(args in argv()) {
        let _ = rcache::rustc::classify(&args);
    }

    #[test]
    fn c_argv_classifier_takes_any_argv(args in argv()) {
        let _ = rcache::cc::args::classify(&args);
    }

    #[test]
    fn directive_parser_takes_any_stdout(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let directives = Directives::parse(&bytes);
        let lines = bytes.split(|&byte| byte == b'\n').count();
        prop_assert!(directives.rerun_if_changed.len() <= lines);
    }

    #[test]
    fn record_decoders_reject_garbage_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = entry::decode::<Entry>(&bytes);
        let _ = entry::decode::<Manifest>(&bytes);
    }

    #[test]
    fn remote_envelopes_reject_garbage_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        signed in any::<bool>(),
    ) {
        // With the envelopes' magic in front, so that the decoders get past the first check.
        for prefix in [&b""[..], b"RCE1\0", b"RCE1\x01", b"RCC1"] {
            let mut input = prefix.to_vec();
            input.extend(&bytes);
            let secret: Option<&[u8]> = signed.then_some(b"k");
            let _ = layout::unseal_entry(&[0; 32], &input, secret);
            let _ = layout::decode_candidate(&input);
        }
    }

    #[test]
    fn truncated_entries_never_decode_as_another_entry(cut in 0usize..64) {
        let original = Entry {
            outputs: vec![],
            stdout: b"cargo::rerun-if-changed=build.rs\n".to_vec(),
            stderr: b"warning".to_vec(),
            out_dir: b"/t/out".to_vec(),
            compile_ms: 12,
            created_unix_ms: 34,
        };
        let bytes = entry::encode(&original);
        let cut = cut.min(bytes.len().saturating_sub(1));
        prop_assert!(entry::decode::<Entry>(&bytes[..cut]).is_err());
    }
}
