//! The README's demo command, `./dev demo`, as a newcomer runs it, in a pseudo-terminal (through
//! `script`, when the machine has it; with the test build of `pgroar` instead of a release
//! build): two demos side by side, each printing its address, answering `/query` while it runs,
//! redrawing its view in place, finding the index equal to SQL, and cleaning up.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn demo(seconds: u64) -> Child {
    let dev = concat!(env!("CARGO_MANIFEST_DIR"), "/dev");
    let args = format!("{dev} demo --rows 3000 --seconds {seconds} --check-every 2");
    let mut cmd = if std::path::Path::new("/usr/bin/script").exists() {
        let mut c = Command::new("/usr/bin/script");
        c.args(["-qfec", &args, "/dev/null"]);
        c
    } else {
        let mut c = Command::new(dev);
        c.args(args.split_whitespace().skip(1));
        c
    };
    cmd.env("PGROAR_BIN", env!("CARGO_BIN_EXE_pgroar"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the demo starts")
}

/// Reads the demo's output up to its address line; returns the address and what came before.
fn address(reader: &mut BufReader<std::process::ChildStdout>) -> (String, String) {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(Instant::now() < deadline, "no address line in:\n{seen}");
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("the demo ended before it served:\n{seen}");
        }
        seen.push_str(&line);
        if let Some(rest) = line.split("serving the image feed at ").nth(1) {
            return (rest.trim().to_string(), seen);
        }
    }
}

#[test]
fn two_demos_run_side_by_side_and_find_the_index_equal_to_sql() {
    let mut children = [demo(14), demo(14)];
    let mut readers: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().unwrap()))
        .collect();
    let mut bases = Vec::new();
    for r in &mut readers {
        let (base, _) = address(r);
        bases.push(base);
    }
    assert_ne!(bases[0], bases[1], "each demo has its own port");
    for base in &bases {
        let body =
            r#"{"filter":"nsfwLevel eq 1","sort":{"field":"existedAt","order":"desc"},"limit":3}"#;
        let mut r = ureq::post(format!("{base}/query"))
            .header("content-type", "application/json")
            .send(body)
            .expect("/query answers while the demo runs");
        let v: serde_json::Value = r.body_mut().read_json().unwrap();
        assert_eq!(v["ids"].as_array().map(Vec::len), Some(3), "{v}");
    }
    for (mut child, mut reader) in children.into_iter().zip(readers) {
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let all = format!("{rest}{stderr}");
        assert!(status.success(), "{all}");
        assert!(all.contains("check: the index equals SQL at LSN"), "{all}");
        assert!(!all.contains("DIFFERS"), "{all}");
        assert!(all.contains("safe images, newest first"), "{all}");
        assert!(all.contains("demo over"), "{all}");
        if std::path::Path::new("/usr/bin/script").exists() {
            // Cursor up over the last frame, then clear to the end (`ESC[<n>A ESC[J`): the view
            // redraws in place. Progress bars write other escape codes, not this pair.
            let redraws = rest.matches("A\x1b[J").count();
            assert!(
                redraws >= 5,
                "the view redraws in place on a terminal: {redraws}"
            );
        }
    }
}
