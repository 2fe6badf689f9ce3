//! `fake-systemd-run`: runs `systemd-run --wait --collect --pipe --quiet --
//! <program> <args…>` as systemd does for the agent's mutating commands:
//! the program runs in a transient unit of its own (`run-u<pid>.service`,
//! told to the host stand-ins through `$CAIRN_FAKE_UNIT`), and its exit code
//! is passed back.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(split) = args.iter().position(|a| a == "--") else {
        eprintln!("fake-systemd-run: expected options, then --, then the command");
        return ExitCode::from(1);
    };
    let options = &args[..split];
    for option in options {
        if !matches!(
            option.as_str(),
            "--wait" | "--collect" | "--pipe" | "--quiet"
        ) {
            eprintln!("fake-systemd-run: unrecognized option '{option}'");
            return ExitCode::from(1);
        }
    }
    let Some((program, rest)) = args[split + 1..].split_first() else {
        eprintln!("fake-systemd-run: no command given");
        return ExitCode::from(1);
    };
    let unit = format!("run-u{}.service", std::process::id());
    match std::process::Command::new(program)
        .args(rest)
        .env("CAIRN_FAKE_UNIT", &unit)
        .status()
    {
        Ok(status) => ExitCode::from(
            status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(1),
        ),
        Err(e) => {
            eprintln!("fake-systemd-run: {program}: {e}");
            ExitCode::from(1)
        }
    }
}
