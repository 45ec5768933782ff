//! Why a C or C++ compiler call is not cached: one [`CcPassthrough`] variant per reason, whose
//! `Display` form is the snake_case name counted in `rcache stats` and written to the events log.
//!
//! Kept apart from the rustc reasons ([`crate::rustc::Passthrough`]) because the two argv
//! grammars share almost nothing; the names share one namespace in the stats, so none repeats a
//! rustc reason with another meaning.

/// Why a gcc/clang invocation is not cached.
#[derive(Debug, Clone, PartialEq, Eq, strum::EnumIter)]
pub enum CcPassthrough {
    /// `-v`, `--version`, `-print-*`, `-dump*`, `--help`, `-###`.
    Probe,
    /// `RCACHE_DISABLE`.
    Disabled,
    /// No `-c`: the driver links.
    Linking,
    /// `-E`: preprocessing only.
    Preprocess,
    /// `-S`: assembly output.
    AssemblyOutput,
    /// `-M` / `-MM`: dependency output only (they imply `-E`).
    DependencyOnly,
    NoSource,
    MultipleSources,
    StdinInput,
    /// `-o -`: the object goes to stdout.
    OutputToStdout,
    /// Compiling a header, `-include-pch`, `-fpch-*`.
    PrecompiledHeader,
    /// `-fprofile-*`, `--coverage`, `-ftest-coverage`, `-fprofile-arcs`, `-fauto-profile`.
    Profile,
    /// `-save-temps`.
    SaveTemps,
    /// `-fdump-*`, `-fstack-usage`, `-ftime-trace` and other options that write files rcache
    /// would not restore.
    ExtraOutput,
    /// `-fplugin=`: the plugin's content is not keyed.
    Plugin,
    /// `@file`: arguments read from a file.
    ResponseFile,
    /// A source language whose compile writes no dep file (`.s`, `.i`, ...).
    UnsupportedLanguage(String),
    /// The source or a header uses `__DATE__`, `__TIME__` or `__TIMESTAMP__`.
    TimeMacros,
    /// `DEPENDENCIES_OUTPUT` or `SUNPRO_DEPENDENCIES` in the environment: the compiler writes a
    /// dep file no argument names.
    DependenciesEnv,
    NonUtf8Argument,
    MissingValue(String),
    /// An option rcache does not know: it might name an input or an output.
    UnknownArgument(String),
    /// No real compiler of that name on PATH (other than rcache itself).
    CompilerNotFound,
    /// The compiler rejected the `-ffile-prefix-map` rcache adds (gcc before 8, clang before
    /// 10): the compile runs again exactly as asked.
    FilePrefixMapUnsupported,
}

impl CcPassthrough {
    /// The stable snake_case name counted in `rcache stats` and written to the events log.
    pub fn as_str(&self) -> &'static str {
        match self {
            CcPassthrough::Probe => "probe",
            CcPassthrough::Disabled => "disabled",
            CcPassthrough::Linking => "cc_linking",
            CcPassthrough::Preprocess => "cc_preprocess_only",
            CcPassthrough::AssemblyOutput => "cc_assembly_output",
            CcPassthrough::DependencyOnly => "cc_dependency_only",
            CcPassthrough::NoSource => "cc_no_source",
            CcPassthrough::MultipleSources => "cc_multiple_sources",
            CcPassthrough::StdinInput => "cc_stdin_input",
            CcPassthrough::OutputToStdout => "cc_output_to_stdout",
            CcPassthrough::PrecompiledHeader => "cc_precompiled_header",
            CcPassthrough::Profile => "cc_profile",
            CcPassthrough::SaveTemps => "cc_save_temps",
            CcPassthrough::ExtraOutput => "cc_extra_output",
            CcPassthrough::Plugin => "cc_plugin",
            CcPassthrough::ResponseFile => "cc_response_file",
            CcPassthrough::UnsupportedLanguage(_) => "cc_unsupported_language",
            CcPassthrough::TimeMacros => "cc_time_macros",
            CcPassthrough::DependenciesEnv => "cc_dependencies_env",
            CcPassthrough::NonUtf8Argument => "cc_non_utf8_argument",
            CcPassthrough::MissingValue(_) => "cc_missing_value",
            CcPassthrough::UnknownArgument(_) => "cc_unknown_argument",
            CcPassthrough::CompilerNotFound => "cc_compiler_not_found",
            CcPassthrough::FilePrefixMapUnsupported => "cc_file_prefix_map_unsupported",
        }
    }
}

impl std::fmt::Display for CcPassthrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl CcPassthrough {
    /// The detail behind the reason, for the debug log.
    pub fn detail(&self) -> Option<&str> {
        match self {
            CcPassthrough::UnsupportedLanguage(detail)
            | CcPassthrough::MissingValue(detail)
            | CcPassthrough::UnknownArgument(detail) => Some(detail),
            _ => None,
        }
    }
}
