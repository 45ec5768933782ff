//! Why an invocation is not cached: one [`Passthrough`] variant per reason, whose `Display` form is
//! the snake_case name counted in `rcache stats` and written to the events log.

/// Why an invocation is not cached. The `Display` form is the snake_case name counted in stats.
#[derive(Debug, Clone, PartialEq, Eq, strum::EnumIter)]
pub enum Passthrough {
    /// `-vV`, `--version`, `--print ...` with no input, `--help`, `--explain`.
    Probe,
    /// `RCACHE_DISABLE`.
    Disabled,
    NoInput,
    StdinInput,
    MultipleInputs,
    NonUtf8Argument,
    BadArgfile,
    UnknownArgument(String),
    MissingValue(String),
    NoCrateName,
    NoCrateType,
    NoOutDir,
    /// A crate type this version does not cache: one outside `lib`, `rlib`, `bin`,
    /// `proc-macro`, `dylib`, `cdylib` and `staticlib` (all of which are cached, README.md "What
    /// is cached"), such as a crate type rustc adds later.
    CrateType(String),
    /// `-o`: outputs named by the caller.
    OutputFile,
    /// `--emit=kind=path`.
    EmitPath,
    /// An emit kind other than dep-info, metadata and link.
    EmitKind(String),
    SaveTemps,
    SplitDebuginfo,
    Profile,
    /// `--print` together with a compile.
    PrintRequest,
    CustomSysroot,
    /// A `-l static=` library that is bundled but not found on the `-L` paths.
    StaticLibNotFound(String),
    /// A staticlib with dependencies: it bundles their rlibs and those of their dependencies,
    /// which no argument names.
    StaticlibDependencies,
    /// A linked crate type for a target whose file names are not derived here (not Linux).
    TargetNaming,
    /// The linker (`cc` on PATH, or `-C linker`) could not be found.
    LinkerNotFound,
    /// The linker rejected `--dependency-file`, so its inputs cannot be named.
    LinkerDependencyFile,
    /// A linker response file (`@file` in `-C link-arg`): the driver reads it, the linker's
    /// dependency file does not list it, and only its path would be keyed.
    LinkerResponseFile,
    /// `RUSTC_WORKSPACE_WRAPPER` that is not clippy-driver.
    UnknownWorkspaceWrapper,
}

impl Passthrough {
    /// The stable snake_case name counted in `rcache stats` and written to the events log.
    pub fn as_str(&self) -> &'static str {
        match self {
            Passthrough::Probe => "probe",
            Passthrough::Disabled => "disabled",
            Passthrough::NoInput => "no_input",
            Passthrough::StdinInput => "stdin_input",
            Passthrough::MultipleInputs => "multiple_inputs",
            Passthrough::NonUtf8Argument => "non_utf8_argument",
            Passthrough::BadArgfile => "bad_argfile",
            Passthrough::UnknownArgument(_) => "unknown_argument",
            Passthrough::MissingValue(_) => "missing_value",
            Passthrough::NoCrateName => "no_crate_name",
            Passthrough::NoCrateType => "no_crate_type",
            Passthrough::NoOutDir => "no_out_dir",
            Passthrough::CrateType(_) => "unsupported_crate_type",
            Passthrough::OutputFile => "output_file",
            Passthrough::EmitPath => "emit_path",
            Passthrough::EmitKind(_) => "emit_kind",
            Passthrough::SaveTemps => "save_temps",
            Passthrough::SplitDebuginfo => "split_debuginfo",
            Passthrough::Profile => "profile_guided",
            Passthrough::PrintRequest => "print_request",
            Passthrough::CustomSysroot => "custom_sysroot",
            Passthrough::StaticLibNotFound(_) => "static_lib_not_found",
            Passthrough::StaticlibDependencies => "staticlib_dependencies",
            Passthrough::TargetNaming => "target_naming",
            Passthrough::LinkerNotFound => "linker_not_found",
            Passthrough::LinkerDependencyFile => "linker_dependency_file_unsupported",
            Passthrough::LinkerResponseFile => "linker_response_file",
            Passthrough::UnknownWorkspaceWrapper => "unknown_workspace_wrapper",
        }
    }
}

impl std::fmt::Display for Passthrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Passthrough {
    /// The detail behind the reason, for the debug log.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Passthrough::UnknownArgument(arg)
            | Passthrough::MissingValue(arg)
            | Passthrough::EmitKind(arg)
            | Passthrough::StaticLibNotFound(arg)
            | Passthrough::CrateType(arg) => Some(arg),
            _ => None,
        }
    }
}
