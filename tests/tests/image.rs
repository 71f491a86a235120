//! The container image's server has no development database: built with the exact cargo
//! command of `deploy/Dockerfile`, it refuses to start without a database URL.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package sits in the workspace")
}

/// The `cargo build` command of `deploy/Dockerfile`, as words. The Dockerfile runs it twice
/// (dependencies, then the workspace): both must be the same command.
fn image_cargo_command() -> Vec<String> {
    let dockerfile = std::fs::read_to_string(workspace().join("deploy/Dockerfile"))
        .expect("read deploy/Dockerfile");
    // Instructions continued with a trailing backslash become one line.
    let joined: String = dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.strip_suffix('\\').map_or(format!("{l}\n"), str::to_owned))
        .collect();
    let mut commands: Vec<&str> = joined
        .lines()
        .filter_map(|l| l.find("cargo build").map(|at| &l[at..]))
        .map(|c| c.split("&&").next().unwrap_or(c).trim())
        .collect();
    assert!(
        !commands.is_empty(),
        "deploy/Dockerfile runs no cargo build"
    );
    commands.dedup();
    assert_eq!(
        commands.len(),
        1,
        "deploy/Dockerfile's cargo build commands differ: {commands:?}"
    );
    let command = commands[0];
    assert!(
        !command.contains(['$', '"', '\'', ';', '|', '<', '>', '`']),
        "the image's cargo command must be plain words: {command}"
    );
    command.split_whitespace().map(str::to_owned).collect()
}

/// The target folder of this test run (`<target>/<profile>/deps/<this test>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    exe.ancestors()
        .nth(3)
        .expect("the test runs from <target>/<profile>/deps")
        .to_owned()
}

#[tokio::test]
async fn the_image_build_of_the_server_cannot_start_a_development_database() {
    let words = image_cargo_command();
    assert_eq!(words[..2], ["cargo", "build"], "{words:?}");
    assert!(
        words.iter().any(|w| w == "--release"),
        "the binary is looked for in release/: {words:?}"
    );
    // A folder of its own, so this build neither waits for nor invalidates the usual one.
    let build_dir = target_dir().join("image-build");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(&words[1..])
        .current_dir(workspace())
        .env("CARGO_TARGET_DIR", &build_dir)
        .stdin(Stdio::null())
        .status()
        .await
        .expect("run cargo");
    assert!(built.success(), "{} failed", words.join(" "));
    let server = build_dir.join("release/callers-server");

    let binary = std::fs::read(&server).expect("read the image's callers-server");
    // `callers-devdb` runs `initdb`; a binary without that word cannot have it linked in.
    assert!(
        !binary.windows(b"initdb".len()).any(|w| w == b"initdb"),
        "the image's callers-server contains the development database"
    );

    let cwd = build_dir.join(format!("run-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&cwd).expect("create a working folder");
    for args in [&[][..], &["migrate"]] {
        let out = Command::new(&server)
            .args(args)
            .env_clear()
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(60), out)
            .await
            .expect("callers-server exits within a minute")
            .expect("run the image's callers-server");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(
            stderr.contains("a database URL is required"),
            "{args:?}: {stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(&cwd).unwrap().flatten().collect();
        assert!(
            left.is_empty(),
            "{args:?} left {left:?} in its working folder"
        );
    }
    std::fs::remove_dir(&cwd).expect("remove the working folder");
}
