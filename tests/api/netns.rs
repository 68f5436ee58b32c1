//! Running one test in a network namespace of its own that holds only loopback (`unshare -rn`),
//! for tests where a mistake could otherwise open a connection to another address.

use std::process::Command;

const INSIDE: &str = "CHARTBRIDGE_TEST_IN_NETNS";

/// Inside the namespace: `true`, once it is sure loopback is all there is. Outside: runs
/// `test` (its full path) again inside one, fails if it fails there, and answers `false` (the
/// caller returns). Without namespaces (no `unshare`, no permission), says so and answers
/// `false`, unless `CHARTBRIDGE_TEST_REQUIRE_NETNS` is set (CI), where it fails.
pub fn isolated(test: &str) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        // The process's own namespace's interfaces (sysfs would show the host's).
        let dev = std::fs::read_to_string("/proc/self/net/dev").expect("/proc lists interfaces");
        let interfaces: Vec<&str> = dev
            .lines()
            .skip(2)
            .filter_map(|line| line.split(':').next())
            .map(str::trim)
            .collect();
        assert_eq!(interfaces, ["lo"], "only loopback in this namespace");
        return true;
    }
    let usable = Command::new("unshare")
        .args(["-rn", "ip", "link", "set", "lo", "up"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !usable {
        assert!(
            std::env::var_os("CHARTBRIDGE_TEST_REQUIRE_NETNS").is_none(),
            "{test}: no network namespace here, and CI requires one"
        );
        eprintln!("{test}: skipped, no network namespace here (needs `unshare -rn` and `ip`)");
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let output = Command::new("unshare")
        .args(["-rn", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .env_remove("TEST_DATABASE_URL")
        .output()
        .expect("unshare runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{test} failed in its namespace:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    false
}
