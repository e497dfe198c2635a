//! The configuration reference, docs/configuration.md, written from the
//! command line's own definitions so that it cannot drift from them: a
//! setting's variable, flag, default, accepted values and help all come from
//! clap, and its section is the help heading `--help` groups it under.
//! `triggers-api config-reference` prints it; a test compares it with the
//! checked-in file.

mod values;

use clap::{Arg, Command};

/// How the checked-in reference is brought up to date.
pub const REGENERATE: &str = "cargo run -q -- config-reference > docs/configuration.md";

/// One setting: a flag and the environment variable that stands for it.
#[derive(Debug)]
pub struct Setting {
    pub variable: String,
    pub flag: Option<String>,
    pub default: Vec<String>,
    pub values: Option<String>,
    pub help: String,
    pub secret: bool,
    /// The subcommands that read it, in the command line's order.
    pub read_by: Vec<String>,
}

/// The settings under one help heading.
#[derive(Debug)]
pub struct Section {
    pub heading: String,
    pub settings: Vec<Setting>,
}

impl Section {
    /// The subcommands that read any of this section's settings.
    pub fn read_by(&self) -> Vec<&str> {
        let mut commands: Vec<&str> = Vec::new();
        for command in self.settings.iter().flat_map(|s| &s.read_by) {
            if !commands.contains(&command.as_str()) {
                commands.push(command);
            }
        }
        commands
    }
}

/// Every setting any visible subcommand reads from the environment, by
/// section, in the order `serve --help` shows them (`serve` comes first and
/// reads them all; the others flatten its sections).
pub fn sections(root: &Command) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for command in root.get_subcommands().filter(|c| !c.is_hide_set()) {
        for arg in command.get_arguments() {
            let Some(variable) = arg.get_env() else {
                continue;
            };
            let variable = variable.to_string_lossy().into_owned();
            let heading = arg.get_help_heading().unwrap_or("Other settings");
            let index = match sections.iter().position(|s| s.heading == heading) {
                Some(index) => index,
                None => {
                    sections.push(Section {
                        heading: heading.to_owned(),
                        settings: Vec::new(),
                    });
                    sections.len() - 1
                }
            };
            let settings = &mut sections[index].settings;
            match settings.iter_mut().find(|s| s.variable == variable) {
                Some(known) => known.read_by.push(command.get_name().to_owned()),
                None => settings.push(setting(arg, variable, command.get_name())),
            }
        }
    }
    sections
}

fn setting(arg: &Arg, variable: String, command: &str) -> Setting {
    let help = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(|help| sentence(&help.to_string()))
        .unwrap_or_default();
    Setting {
        variable,
        flag: arg.get_long().map(|long| format!("--{long}")),
        default: arg
            .get_default_values()
            .iter()
            .map(|value| value.to_string_lossy().into_owned())
            .collect(),
        values: values::allowed(arg),
        help,
        secret: arg.is_hide_env_values_set(),
        read_by: vec![command.to_owned()],
    }
}

/// The reference as Markdown, for the command line rooted at `root`.
pub fn markdown(root: &Command) -> String {
    let sections = sections(root);
    let mut out = format!(
        "> Generated from the code (the clap definitions in `src/config/`) by `{REGENERATE}`; a test fails when the two differ, so edit the code, not this file.\n\
         > Every setting is both a flag and an environment variable (`--db-pool-size 32` is `TRIGGERS_DB_POOL_SIZE=32`); a flag given on the command line wins over the variable.\n\
         \n\
         # Configuration reference\n\
         \n\
         `triggers-api serve` reads every setting below. The other commands read the sections they share with it, so that they reach the same Postgres and Redis and open the same secrets: each section says which commands read it. Settings marked **secret** are never shown by `--help` or in logs; give them from a secret store (a Kubernetes Secret) rather than as flags, which any user of the machine can see in the process list.\n\
         \n"
    );
    for section in &sections {
        out.push_str(&format!(
            "- [{}](#{})\n",
            section.heading,
            anchor(&section.heading)
        ));
    }
    for section in &sections {
        out.push_str(&render_section(section));
    }
    out.push_str(
        "\n## Read outside the command line\n\
         \n\
         Logs and traces take the usual variables, which are no flags: `RUST_LOG` filters the JSON log lines (default `info`, dependencies at `warn`); traces are exported only when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, and the OpenTelemetry SDK's own variables (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`) apply. `POD_NAME`, else `HOSTNAME`, names the process in its default consumer name and its traces.\n",
    );
    out
}

fn render_section(section: &Section) -> String {
    let mut out = format!(
        "\n## {}\n\nRead by {}.\n\n\
         | Variable | Flag | Default | Values | Description |\n\
         |---|---|---|---|---|\n",
        section.heading,
        listing(&section.read_by())
    );
    for setting in &section.settings {
        let secret = if setting.secret { " **secret**" } else { "" };
        let flag = setting
            .flag
            .as_deref()
            .map_or_else(String::new, |flag| format!("`{flag}`"));
        let default = if setting.default.is_empty() {
            "unset".to_owned()
        } else {
            format!("`{}`", setting.default.join(","))
        };
        out.push_str(&format!(
            "| `{}`{secret} | {flag} | {default} | {} | {} |\n",
            setting.variable,
            cell(setting.values.as_deref().unwrap_or("")),
            cell(&setting.help)
        ));
    }
    out
}

/// `` `serve` ``, `` `serve` and `admin` ``, `` `serve`, `migrate` and `admin` ``.
fn listing(commands: &[&str]) -> String {
    let quoted: Vec<String> = commands.iter().map(|c| format!("`{c}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Help text as one line ending in a full stop (clap drops the stop of a
/// one-sentence help).
fn sentence(text: &str) -> String {
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if !line.is_empty() && !line.ends_with(['.', '!', '?']) {
        line.push('.');
    }
    line
}

/// A table cell: a `|` would end it.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The anchor GitHub gives a heading.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
