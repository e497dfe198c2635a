use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use clap::CommandFactory;

use super::*;
use crate::cli::Cli;

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn checked_in() -> String {
    let path = repository().join("docs/configuration.md");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("{}: {err}; create it with `{REGENERATE}`", path.display()))
}

#[test]
fn docs_configuration_md_is_what_the_code_generates() {
    let generated = markdown(&Cli::command());
    let file = checked_in();
    if generated != file {
        let first = generated
            .lines()
            .zip(file.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| generated.lines().count().min(file.lines().count()));
        panic!(
            "docs/configuration.md differs from the settings in the code, first at line {}: \
             regenerate it with `{REGENERATE}`\n  code: {:?}\n  file: {:?}",
            first + 1,
            generated.lines().nth(first),
            file.lines().nth(first),
        );
    }
}

/// The variables a subcommand reads through clap.
fn variables(command: &str) -> Vec<String> {
    let root = Cli::command();
    let command = root.find_subcommand(command).expect("subcommand");
    command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn every_variable_serve_and_admin_read_is_in_the_reference() {
    let file = checked_in();
    let all = variables("serve").into_iter().chain(variables("admin"));
    for variable in all {
        assert!(
            file.contains(&format!("| `{variable}`")),
            "{variable} is missing from docs/configuration.md: regenerate it with `{REGENERATE}`"
        );
    }
    let admin = variables("admin");
    assert!(
        admin.contains(&"TRIGGERS_SECRET_KEYS".to_owned()),
        "{admin:?}"
    );
}

#[test]
fn every_setting_of_serve_is_a_flag_and_a_variable() {
    let mut root = Cli::command();
    root.build();
    let serve = root.find_subcommand("serve").expect("serve");
    for arg in serve.get_arguments() {
        if matches!(arg.get_id().as_str(), "help" | "version") {
            continue;
        }
        assert!(arg.get_long().is_some(), "{} has no flag", arg.get_id());
        assert!(arg.get_env().is_some(), "{} has no variable", arg.get_id());
        assert!(
            arg.get_help_heading().is_some(),
            "{} has no section",
            arg.get_id()
        );
    }
}

#[test]
fn every_section_is_read_whole_by_each_command_that_reads_it() {
    // The reference says per section, not per setting, who reads it.
    for section in sections(&Cli::command()) {
        let commands = section.read_by();
        for setting in &section.settings {
            assert_eq!(
                setting.read_by, commands,
                "{} in section {}",
                setting.variable, section.heading
            );
        }
    }
}

#[test]
fn the_reference_says_what_each_setting_accepts() {
    let sections = sections(&Cli::command());
    let find = |variable: &str| {
        sections
            .iter()
            .flat_map(|s| &s.settings)
            .find(|s| s.variable == variable)
            .unwrap_or_else(|| panic!("{variable} not found"))
    };
    assert_eq!(
        find("TRIGGERS_STREAM_SHARDS").values.as_deref(),
        Some("integer 1–1024")
    );
    assert_eq!(
        find("TRIGGERS_ARCHIVE_BATCH").values.as_deref(),
        Some("integer ≥ 1")
    );
    let role = find("TRIGGERS_ROLE").values.clone().expect("role values");
    assert!(role.starts_with("`api`: Public HTTP API only"), "{role}");
    assert_eq!(
        find("TRIGGERS_MIGRATE").values.as_deref(),
        Some("`true`, `false`")
    );
    assert!(find("TRIGGERS_SECRET_KEYS").secret);
    assert!(find("DATABASE_URL").secret);
    assert!(!find("TRIGGERS_LISTEN").secret);
    assert_eq!(find("TRIGGERS_LISTEN").default, ["0.0.0.0:8080"]);
    assert_eq!(find("DATABASE_URL").read_by, ["serve", "migrate", "admin"]);
}

/// Variables the repository's own scripts and examples define for
/// themselves (a script's binary, an example's API key), which are no
/// settings of the service.
fn script_variables() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for dir in ["scripts", "bench", "examples"] {
        for file in files_under(&repository().join(dir), &|_| true) {
            if let Ok(text) = std::fs::read_to_string(&file) {
                names.extend(named_variables(&text));
            }
        }
    }
    names
}

/// A design that proposes a setting names one that does not exist yet.
const PROPOSED: &[&str] = &["TRIGGERS_ARCHIVE_DATABASES"];

#[test]
fn the_markdown_names_no_variable_that_does_not_exist() {
    let root = Cli::command();
    let mut known: BTreeSet<String> = root
        .get_subcommands()
        .flat_map(|c| c.get_arguments())
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect();
    known.extend(script_variables());
    known.extend(PROPOSED.iter().map(|name| (*name).to_owned()));
    let markdown = files_under(repository(), &|path| {
        path.extension().is_some_and(|ext| ext == "md")
    });
    assert!(
        markdown.iter().any(|p| p.ends_with("README.md")),
        "{markdown:?}"
    );
    let mut unknown = Vec::new();
    for file in markdown {
        let text = std::fs::read_to_string(&file).expect("readable Markdown");
        for name in named_variables(&text) {
            if !known.contains(&name) {
                let shown = file.strip_prefix(repository()).unwrap_or(&file);
                unknown.push(format!("{}: {name}", shown.display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "Markdown names variables the service does not read (see docs/configuration.md): {unknown:?}"
    );
}

#[test]
fn variable_names_are_upper_case_words_after_the_prefix() {
    let text = "set `TRIGGERS_ENV=development`, TRIGGERS_* or MY_TRIGGERS_X; \
                the metric triggers_events_total";
    assert_eq!(named_variables(text), ["TRIGGERS_ENV"]);
}

/// Every `TRIGGERS_…` name in a text (metrics, `triggers_…`, are lower case).
fn named_variables(text: &str) -> Vec<String> {
    const PREFIX: &str = "TRIGGERS_";
    let is_name = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_';
    let mut names = Vec::new();
    for (at, _) in text.match_indices(PREFIX) {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[at + PREFIX.len()..];
        let end = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
        let tail = rest[..end].trim_end_matches('_');
        if !tail.is_empty() {
            names.push(format!("{PREFIX}{tail}"));
        }
    }
    names
}

/// The files under `dir` that `wanted` accepts, skipping build output and
/// hidden directories.
fn files_under(dir: &Path, wanted: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            found.extend(files_under(&path, wanted));
        } else if wanted(&path) {
            found.push(path);
        }
    }
    found.sort();
    found
}
