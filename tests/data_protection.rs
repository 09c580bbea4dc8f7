//! Data protection: results cells a spreadsheet would run as formulas are neutralised
//! while what is sent to Payroc is not touched, and nothing the tool writes at rest — ledger,
//! its WAL and shared memory, the results, stdout and stderr — holds a full card, account or
//! routing number, or an unkeyed SHA-256 of one.

use std::collections::HashSet;

use payroc_sandbox::SandboxConfig;
use predicates::prelude::PredicateBooleanExt;
use sha2::{Digest, Sha256};

use crate::support::Seeded;
use crate::util::{TestSandbox, Workdir, read_results};

#[test]
fn formula_cells_are_neutralised_in_the_results_but_sent_unchanged() {
    let workdir = Workdir::new();
    let header = "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date,custom.costCenter\n";
    let rows = [
        ("=1+2", "=HYPERLINK(\"http://x.example\")", "=cmd|' /C calc'!A0"),
        ("-123", "-5 goodwill", "-1"),
        ("+44", "+SUM(A1:A9)", "+x"),
        ("@home", "@SUM(1)", "@x"),
    ];
    let mut content = header.to_owned();
    for (order_id, description, note) in rows {
        let quote = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
        content.push_str(&format!(
            "card,1234001,{},1.00,USD,{},4111111111111111,0929,{}\n",
            quote(order_id),
            quote(description),
            quote(note)
        ));
    }
    // An invalid row whose label cells are formulas too (reported with --skip-invalid).
    content.push_str("card,1234001,=BAD,=1+1,USD,x,4111111111111111,0929,\n");
    workdir.write("formulas.csv", &content);
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir
        .command()
        .args(sandbox.arguments())
        .args(["run", "formulas.csv", "--skip-invalid"])
        .assert()
        .code(1);

    let results = read_results(&workdir.path("formulas.results.csv"));
    assert_eq!(results.len(), 5);
    for (line, (order_id, ..)) in results.iter().zip(rows) {
        assert_eq!(line["status"], "succeeded", "{line:?}");
        assert_eq!(
            line["order_id"],
            format!("'{order_id}"),
            "the results cell is neutralised"
        );
    }
    assert_eq!(results[4]["status"], "invalid");
    assert_eq!(results[4]["order_id"], "'=BAD");
    assert_eq!(results[4]["amount"], "'=1+1");
    for line in &results {
        for (column, cell) in line {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{column} = {cell:?}"
            );
        }
    }

    // Payroc got the values as written: the neutralising quote is only in the results.
    let stats = sandbox.stats();
    assert_eq!(stats.refunds.len(), 4);
    // Requests run concurrently, so the sandbox's creation order is not the file's: match by order id.
    for (order_id, description, note) in rows {
        let refund = stats
            .refunds
            .iter()
            .find(|refund| refund.order_id == order_id)
            .unwrap_or_else(|| panic!("no refund for {order_id}"));
        let stored = sandbox.card_refund(&refund.refund_id);
        assert_eq!(stored["order"]["orderId"], order_id);
        assert_eq!(stored["order"]["description"], description);
        assert_eq!(stored["customFields"][0]["name"], "costCenter");
        assert_eq!(stored["customFields"][0]["value"], note);
    }
}

/// `count` random decimal digits.
fn digits(numbers: &mut Seeded, count: usize) -> String {
    (0..count)
        .map(|_| char::from(b'0' + numbers.between(0, 9) as u8))
        .collect()
}

fn luhn_check_digit(body: &str) -> char {
    (b'0'..=b'9')
        .map(char::from)
        .find(|check| {
            let number = format!("{body}{check}");
            let sum: u32 = number
                .bytes()
                .rev()
                .enumerate()
                .map(|(position, byte)| {
                    let digit = u32::from(byte - b'0');
                    if position % 2 == 1 {
                        if digit * 2 > 9 { digit * 2 - 9 } else { digit * 2 }
                    } else {
                        digit
                    }
                })
                .sum();
            sum.is_multiple_of(10)
        })
        .expect("one check digit fits")
}

fn aba_check_digit(first_eight: &str) -> char {
    let digits: Vec<u32> = first_eight.bytes().map(|byte| u32::from(byte - b'0')).collect();
    let partial =
        3 * (digits[0] + digits[3] + digits[6]) + 7 * (digits[1] + digits[4] + digits[7]) + digits[2] + digits[5];
    char::from(b'0' + ((10 - partial % 10) % 10) as u8)
}

/// Every place in `haystack` where one of `needles` occurs, found by scanning runs of digits and
/// of hex characters (so thousands of needles cost one pass), plus raw 32-byte digests.
fn leaks(
    haystack: &[u8],
    numbers: &HashSet<Vec<u8>>,
    hex_digests: &HashSet<Vec<u8>>,
    raw_digests: &HashSet<Vec<u8>>,
) -> Vec<String> {
    let mut found = Vec::new();
    let number_lengths: HashSet<usize> = numbers.iter().map(Vec::len).collect();
    let runs = |predicate: fn(&u8) -> bool| {
        haystack
            .split(move |byte| !predicate(byte))
            .filter(|run| !run.is_empty())
            .collect::<Vec<_>>()
    };
    for run in runs(u8::is_ascii_digit) {
        for length in &number_lengths {
            for window in run.windows(*length) {
                if numbers.contains(window) {
                    found.push(format!("number {}", String::from_utf8_lossy(window)));
                }
            }
        }
    }
    for run in runs(u8::is_ascii_hexdigit) {
        for window in run.windows(64) {
            if hex_digests.contains(&window.to_ascii_lowercase()) {
                found.push(format!("hex SHA-256 {}", String::from_utf8_lossy(window)));
            }
        }
    }
    let prefixes: HashSet<&[u8]> = raw_digests.iter().map(|digest| &digest[..8]).collect();
    for window in haystack.windows(32) {
        if prefixes.contains(&window[..8]) && raw_digests.contains(window) {
            found.push("raw SHA-256".into());
        }
    }
    found
}

/// What a command said and every file it left in `workdir` (zip parts unpacked), but the input
/// file `input`: everything a search for numbers at rest must look through.
fn written_by(output: &std::process::Output, workdir: &Workdir, input: &str) -> Vec<(String, Vec<u8>)> {
    let mut searched = vec![
        ("stdout".to_owned(), output.stdout.clone()),
        ("stderr".to_owned(), output.stderr.clone()),
    ];
    let input = workdir.path(input);
    for (path, bytes) in workdir.all_files() {
        if path != input {
            searched.push((path.display().to_string(), bytes));
        }
    }
    searched
}

#[test]
fn no_full_number_or_unkeyed_hash_of_one_is_written_anywhere() {
    let workdir = Workdir::new();
    let mut numbers = Seeded::new(6);
    let mut secrets: Vec<String> = Vec::new();
    let mut content = String::from(
        "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date,account_number,routing_number,name_on_account\n",
    );
    let rows = 2_000;
    for index in 0..rows {
        if index % 2 == 0 {
            let body = format!("45{:06}{}", index, digits(&mut numbers, 7));
            let card = format!("{body}{}", luhn_check_digit(&body));
            content.push_str(&format!(
                "card,1234001,P{index},1.{:02},USD,Refund,{card},0929,,,\n",
                index % 100
            ));
            secrets.push(card);
        } else {
            let account = format!("7{:05}{}", index, digits(&mut numbers, 6));
            let first_eight = format!("{:08}", (index as u64 * 7919 + 1_234_567) % 100_000_000);
            let routing = format!("{first_eight}{}", aba_check_digit(&first_eight));
            content.push_str(&format!(
                "bank,1234001,P{index},2.00,USD,,,,{account},{routing},Pat Doe\n"
            ));
            secrets.push(account);
            secrets.push(routing);
        }
    }
    assert_eq!(
        secrets.iter().collect::<HashSet<_>>().len(),
        secrets.len(),
        "every number is distinct"
    );
    workdir.write("numbers.csv", &content);
    let sandbox = TestSandbox::start(SandboxConfig::default());
    let run = workdir
        .command()
        .args(sandbox.arguments())
        .args(["run", "numbers.csv", "--rate", "100000", "--concurrency", "16", "-vv"])
        .args(["--workbook", "numbers.xlsx"])
        .assert()
        .code(0);
    assert_eq!(sandbox.stats().refunds.len(), rows);

    let number_needles: HashSet<Vec<u8>> = secrets.iter().map(|secret| secret.as_bytes().to_vec()).collect();
    let raw_digests: HashSet<Vec<u8>> = secrets
        .iter()
        .map(|secret| Sha256::digest(secret.as_bytes()).to_vec())
        .collect();
    let hex_digests: HashSet<Vec<u8>> = raw_digests
        .iter()
        .map(|digest| {
            digest
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>()
                .into_bytes()
        })
        .collect();

    let output = run.get_output();
    let searched = written_by(output, &workdir, "numbers.csv");
    let names: Vec<&str> = searched.iter().map(|(name, _)| name.as_str()).collect();
    assert!(names.iter().any(|name| name.ends_with("ledger.sqlite")), "{names:?}");
    assert!(
        names.iter().any(|name| name.ends_with("numbers.results.csv")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|name| name.ends_with("numbers.xlsx/xl/worksheets/sheet1.xml")),
        "the workbook's sheets are searched unpacked: {names:?}"
    );
    // The search can find what it looks for: the input itself is full of it.
    assert!(!leaks(content.as_bytes(), &number_needles, &hex_digests, &raw_digests).is_empty());
    for (name, bytes) in &searched {
        let found = leaks(bytes, &number_needles, &hex_digests, &raw_digests);
        assert!(
            found.is_empty(),
            "{name}: {} leaks, first {:?}",
            found.len(),
            found.first()
        );
    }

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for name in ["ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm"] {
            let path = workdir.path(name);
            // SQLite removes the WAL and shared-memory files when the last connection closes.
            if (name.ends_with("-wal") || name.ends_with("-shm")) && !path.exists() {
                continue;
            }
            let mode = std::fs::metadata(&path).expect("file exists").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        // The results hold masked payees only and follow the umask, to be shared.
        let results = std::fs::metadata(workdir.path("numbers.results.csv"))
            .expect("results")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(results, crate::util::umask_mode(&workdir), "numbers.results.csv");
    }
}

#[test]
fn secrets_are_taken_only_from_safe_places_and_card_data_only_over_https() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &crate::util::sample("card.csv"));
    let sandbox = TestSandbox::start(SandboxConfig::default());

    // A key file others can read is refused, naming the file and the fix.
    let key_file = workdir.write("payroc.key", "key-from-a-file\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        workdir
            .command()
            .env_remove("PAYROC_API_KEY")
            .args(sandbox.arguments())
            .args(["--api-key-file", "payroc.key", "run", "day.csv"])
            .assert()
            .code(2)
            .stderr(predicates::str::contains("readable by other users").and(predicates::str::contains("chmod 600")));
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    // Without any key, UAT refuses to start and says where a key may come from.
    workdir
        .command()
        .env_remove("PAYROC_API_KEY")
        .args(sandbox.arguments())
        .args(["run", "day.csv"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("PAYROC_API_KEY").and(predicates::str::contains("--api-key-file")));
    assert_eq!(sandbox.stats().refund_posts, 0);

    // Plain http to a host that is not loopback is refused before anything is sent.
    workdir
        .command()
        .args([
            "--env",
            "uat",
            "--api-url",
            "http://api.example.com/v1",
            "--identity-url",
            "http://identity.example.com",
        ])
        .args(["run", "day.csv"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("plain http to a host that is not loopback"));

    // The key file works once it is private, and its content never shows up anywhere.
    workdir
        .command()
        .env_remove("PAYROC_API_KEY")
        .args(sandbox.arguments())
        .args(["--api-key-file", "payroc.key", "run", "day.csv"])
        .assert()
        .code(0);
    for (path, bytes) in workdir.all_files() {
        if path != key_file {
            assert!(
                !String::from_utf8_lossy(&bytes).contains("key-from-a-file"),
                "the key leaked into {}",
                path.display()
            );
        }
    }
}

/// The ways a person writes one card number, as the reviewer found them accepted in an id.
const SEPARATED_CARD: [&str; 4] = [
    "4539 8588 7604 7062",
    "4539-8588-7604-7062",
    "4539.8588.7604.7062",
    "4539/8588/7604/7062",
];

/// Whether `bytes` hold the card number, as written in any of its forms or with every space,
/// dash, dot and slash removed (which joins the groups of any grouping back into one run).
fn holds_the_card(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let bare: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|byte| !matches!(byte, b' ' | b'-' | b'.' | b'/'))
        .collect();
    SEPARATED_CARD.iter().any(|form| text.contains(form))
        || bare.windows(16).any(|window| window == b"4539858876047062")
}

#[test]
fn a_card_number_written_with_separators_in_any_cell_is_refused_and_never_written() {
    let workdir = Workdir::new();
    let content = format!(
        "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date,operator,custom.note\n\
         card,1234001,SEP-1,1.00,USD,Refund,4111111111111111,0929,,\n\
         card,1234001,{},1.00,USD,Refund,4111111111111111,0929,,\n\
         card,{},SEP-3,1.00,USD,Refund,4111111111111111,0929,,\n\
         card,1234001,SEP-4,1.00,USD,refund {} ok,4111111111111111,0929,,\n\
         card,1234001,SEP-5,1.00,USD,Refund,4111111111111111,0929,{},see 4539 - 8588 - 7604 - 7062\n",
        SEPARATED_CARD[0], SEPARATED_CARD[1], SEPARATED_CARD[2], SEPARATED_CARD[3]
    );
    workdir.write("separated.csv", &content);
    assert!(holds_the_card(content.as_bytes()), "the search finds what it looks for");

    let validate = workdir.command().args(["validate", "separated.csv"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&validate.get_output().stderr).into_owned();
    for expected in [
        "row 3, column order_id: holds a card number in the wrong place ([redacted …7062]",
        "row 4, column processing_terminal_id: holds a card number in the wrong place ([redacted …7062]",
        "row 5, column description: holds a card number in the wrong place",
        "row 6, column operator: holds a card number in the wrong place",
        "row 6, column custom.note: holds a card number in the wrong place",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(!holds_the_card(&validate.get_output().stderr), "{stderr}");
    assert!(!holds_the_card(&validate.get_output().stdout));

    let sandbox = TestSandbox::start(SandboxConfig::default());
    let run = workdir
        .command()
        .args(sandbox.arguments())
        .args([
            "-vv",
            "run",
            "separated.csv",
            "--skip-invalid",
            "--workbook",
            "separated.xlsx",
        ])
        .assert()
        .code(1);
    let results = read_results(&workdir.path("separated.results.csv"));
    assert_eq!(
        results.iter().map(|line| line["status"].as_str()).collect::<Vec<_>>(),
        ["succeeded", "invalid", "invalid", "invalid", "invalid"]
    );
    assert_eq!(results[1]["order_id"], "[redacted …7062]");
    assert_eq!(results[2]["processing_terminal_id"], "[redacted …7062]");
    assert_eq!(sandbox.stats().refunds.len(), 1, "only the clean row was sent");

    let output = run.get_output();
    let searched = written_by(output, &workdir, "separated.csv");
    let names: Vec<&str> = searched.iter().map(|(name, _)| name.as_str()).collect();
    assert!(names.iter().any(|name| name.ends_with("ledger.sqlite")), "{names:?}");
    assert!(
        names.iter().any(|name| name.ends_with("separated.results.csv")),
        "{names:?}"
    );
    for (name, bytes) in &searched {
        assert!(!holds_the_card(bytes), "the card number is in {name}");
    }
}

/// Whether `text`, read with full-width digits as digits and every other character that is not
/// a digit dropped, holds the card number: any spelling of it at all.
fn holds_the_card_in_any_spelling(bytes: &[u8]) -> bool {
    let digits: String = String::from_utf8_lossy(bytes)
        .chars()
        .filter_map(|character| match character {
            '0'..='9' => Some(character),
            '\u{ff10}'..='\u{ff19}' => char::from_u32(u32::from(character) - 0xff10 + u32::from('0')),
            _ => None,
        })
        .collect();
    digits.contains("4539858876047062")
}

#[test]
fn a_card_number_in_any_spelling_is_refused_in_ids_and_never_written() {
    const SPELLINGS: [&str; 6] = [
        "4539_8588_7604_7062",
        "4539x8588x7604x7062",
        "45-39-85-88-76-04-70-62",
        "4539 -  8588-7604-7062",
        "\u{ff14}\u{ff15}\u{ff13}\u{ff19}\u{ff18}\u{ff15}\u{ff18}\u{ff18}\u{ff17}\u{ff16}\u{ff10}\u{ff14}\u{ff17}\u{ff10}\u{ff16}\u{ff12}",
        "4539:8588:7604:7062",
    ];
    let workdir = Workdir::new();
    let mut content = String::from(
        "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date,4539_8588_7604_7062\n",
    );
    content.push_str("card,1234001,ANY-0,1.00,USD,Refund,4111111111111111,0929,\n");
    for spelled in SPELLINGS {
        content.push_str(&format!(
            "card,1234001,{spelled},1.00,USD,Refund,4111111111111111,0929,\n"
        ));
    }
    content.push_str(&format!(
        "card,{},ANY-9,1.00,USD,Refund,4111111111111111,0929,\n",
        SPELLINGS[0]
    ));
    content.push_str(&format!(
        "card,1234001,ANY-10,1.00,{},Refund,4111111111111111,0929,\n",
        SPELLINGS[2]
    ));
    workdir.write("any.csv", &content);
    let sandbox = TestSandbox::start(SandboxConfig::default());
    let run = workdir
        .command()
        .args(sandbox.arguments())
        .args(["-vv", "run", "any.csv", "--skip-invalid", "--workbook", "any.xlsx"])
        .assert()
        .code(1);
    let results = read_results(&workdir.path("any.results.csv"));
    assert_eq!(results.iter().filter(|line| line["status"] == "invalid").count(), 8);
    assert_eq!(sandbox.stats().refunds.len(), 1, "only the clean row was sent");
    let output = run.get_output();
    let searched = written_by(output, &workdir, "any.csv");
    assert!(
        searched
            .iter()
            .any(|(name, _)| name.ends_with("any.xlsx/xl/worksheets/sheet3.xml"))
    );
    for (name, bytes) in &searched {
        assert!(!holds_the_card_in_any_spelling(bytes), "the card number is in {name}");
    }
}
