//! `meshsim-floor FILE`: the reference of `make bench` — read the file whole and parse it with
//! serde_json into `IgnoredAny`, nothing else. No tool that reads the same JSON can be much
//! faster; the table views are measured against it.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        let _ = std::io::Write::write_all(&mut std::io::stderr(), b"usage: meshsim-floor FILE\n");
        return ExitCode::from(2);
    };
    let parsed = std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(|e| e.to_string())
        });
    match parsed {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("meshsim-floor: {}: {e}\n", path.to_string_lossy()).as_bytes(),
            );
            ExitCode::FAILURE
        }
    }
}
