//! Records the commit the binary is built from, for `triggers_build_info`:
//! `GIT_COMMIT` when set (container builds have no `.git`), else
//! `git rev-parse --short HEAD`, else "unknown".

use std::{path::Path, process::Command};

fn main() {
    println!("cargo:rerun-if-env-changed=GIT_COMMIT");
    // `sqlx::migrate!` embeds the migrations but watches only the files it
    // saw: a new one must rebuild the crate too.
    println!("cargo:rerun-if-changed=migrations");
    let commit = std::env::var("GIT_COMMIT")
        .ok()
        .map(|c| c.trim().chars().take(12).collect::<String>())
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=TRIGGERS_GIT_COMMIT={commit}");
    // Build again when HEAD moves: a commit, a checkout. A path that does
    // not exist (a packed ref) would make every build rerun this.
    let head = git(&["rev-parse", "--git-path", "HEAD"]);
    let branch = git(&["symbolic-ref", "-q", "HEAD"])
        .and_then(|name| git(&["rev-parse", "--git-path", &name]));
    for path in [head, branch].into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}
