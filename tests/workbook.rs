//! The workbook, read back with an independent reader (calamine): every cell of *Results* typed
//! as the CSV's column says (numbers for amounts and counts, text for ids and codes, leading
//! zeros kept), *Summary*'s totals equal to sums the test makes from the CSV itself, *Needs a
//! person* holding exactly the rows that did not succeed, and `report` writing the same again.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use calamine::{Data, Range, Reader, Xlsx, open_workbook};
use payroc_sandbox::SandboxConfig;
use predicates::prelude::*;

use crate::util::{TestSandbox, Workdir, read_results, sample, umask_mode};

/// The sample of every Payroc outcome, plus rows in JPY and KWD and one invalid row.
fn day_file() -> String {
    let mut file = sample("outcomes.csv");
    let columns = file.lines().next().unwrap().split(',').count();
    let row = |cells: &[&str]| {
        let mut line: Vec<&str> = cells.to_vec();
        line.resize(columns, "");
        line.join(",") + "\n"
    };
    file.push_str(&row(&[
        "card",
        "1234001",
        "W-JPY-1",
        "1200",
        "JPY",
        "yen",
        "4111111111111111",
        "1230",
    ]));
    file.push_str(&row(&[
        "card",
        "1234001",
        "W-KWD-1",
        "9.5",
        "KWD",
        "dinars",
        "4111111111111111",
        "1230",
    ]));
    file.push_str(&row(&[
        "card",
        "1234001",
        "W-BAD-1",
        "12,3",
        "USD",
        "bad amount",
        "4111111111111111",
        "1230",
    ]));
    file
}

fn sheet(path: &Path, name: &str) -> Range<Data> {
    let mut workbook: Xlsx<_> = open_workbook(path).unwrap_or_else(|error| panic!("open {}: {error}", path.display()));
    workbook
        .worksheet_range(name)
        .unwrap_or_else(|error| panic!("sheet {name}: {error}"))
}

fn cell(range: &Range<Data>, row: usize, column: usize) -> Data {
    range
        .get_value((row as u32, column as u32))
        .cloned()
        .unwrap_or(Data::Empty)
}

/// The columns whose cells are numbers; every other column is text.
const NUMBER_COLUMNS: [&str; 5] = ["row", "amount", "authorized_amount", "http_status", "attempts"];

/// Checks every cell of *Results* against the CSV line of the same row: the same value, typed.
fn assert_results_match_csv(workbook: &Path, csv: &Path) {
    let lines = read_results(csv);
    let header: Vec<String> = {
        let mut reader = csv::Reader::from_path(csv).unwrap();
        reader.headers().unwrap().iter().map(str::to_owned).collect()
    };
    let results = sheet(workbook, "Results");
    assert_eq!(results.height(), lines.len() + 1, "a header and one row per line");
    for (column, name) in header.iter().enumerate() {
        assert_eq!(cell(&results, 0, column), Data::String(name.clone()), "header {column}");
    }
    for (index, line) in lines.iter().enumerate() {
        for (column, name) in header.iter().enumerate() {
            let text = &line[name];
            let found = cell(&results, index + 1, column);
            let status = &line["status"];
            match (NUMBER_COLUMNS.contains(&name.as_str()), text.is_empty()) {
                (_, true) => assert_eq!(found, Data::Empty, "row {} {name}", line["row"]),
                // An invalid row's amount is what was typed, kept as text.
                (true, false) if status == "invalid" && name == "amount" => {
                    assert_eq!(found, Data::String(text.clone()), "row {} {name}", line["row"]);
                }
                (true, false) => {
                    let expected: f64 = text.parse().unwrap_or_else(|_| panic!("{name} {text:?} is a number"));
                    assert_eq!(found, Data::Float(expected), "row {} {name}", line["row"]);
                }
                (false, false) => {
                    // The CSV guards formula-like cells with a quote; the workbook's text cells
                    // need no guard.
                    let unguarded = text.strip_prefix('\'').unwrap_or(text);
                    assert_eq!(found, Data::String(unguarded.to_owned()), "row {} {name}", line["row"]);
                }
            }
        }
    }
}

/// (status, currency) → (rows, amount).
type Totals = BTreeMap<(String, String), (u64, f64)>;

/// Rows and amounts per (status, currency) of the valid rows, summed from the CSV.
fn csv_totals(csv: &Path) -> Totals {
    let mut totals = Totals::new();
    for line in read_results(csv) {
        if line["status"] == "invalid" {
            continue;
        }
        let entry = totals
            .entry((line["status"].clone(), line["currency"].clone()))
            .or_insert((0, 0.0));
        entry.0 += 1;
        // Summed as doubles and compared with a tolerance: a check, not money handling.
        entry.1 += line["amount"].parse::<f64>().unwrap();
    }
    totals
}

/// The (status, currency) → (rows, amount) table of *Summary*, and its "all rows" figure.
fn summary_table(workbook: &Path) -> (Totals, u64) {
    let summary = sheet(workbook, "Summary");
    let mut table = BTreeMap::new();
    let mut all_rows = None;
    let mut in_table = false;
    for row in 0..summary.height() {
        match (cell(&summary, row, 0), cell(&summary, row, 1)) {
            (Data::String(first), Data::String(second)) if first == "status" && second == "currency" => {
                in_table = true;
            }
            (Data::String(first), _) if first == "all rows" => {
                let Data::Float(rows) = cell(&summary, row, 2) else {
                    panic!("all rows is a number")
                };
                all_rows = Some(rows as u64);
                in_table = false;
            }
            (Data::String(status), Data::String(currency)) if in_table && currency != "(not read)" => {
                let Data::Float(rows) = cell(&summary, row, 2) else {
                    panic!("rows of {status} {currency} are a number")
                };
                let Data::Float(amount) = cell(&summary, row, 3) else {
                    panic!("the amount of {status} {currency} is a number")
                };
                table.insert((status, currency), (rows as u64, amount));
            }
            _ => {}
        }
    }
    (table, all_rows.expect("an all-rows line"))
}

/// The names of the parts of the xlsx package (a zip), and the text of one of them.
fn package_part(workbook: &Path, part: &str) -> Option<String> {
    let file = std::fs::File::open(workbook).unwrap();
    let mut archive = zip::ZipArchive::new(file).unwrap();
    let mut entry = archive.by_name(part).ok()?;
    let mut text = String::new();
    entry.read_to_string(&mut text).unwrap();
    Some(text)
}

#[test]
fn the_workbook_holds_the_csv_typed_with_its_totals_and_the_rows_for_a_person() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &day_file());
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir
        .run(&sandbox, "day.csv", &["--skip-invalid", "--workbook", "day.xlsx"])
        .code(1)
        .stderr(predicate::str::contains("workbook: day.xlsx"));
    let workbook = workdir.path("day.xlsx");
    let csv = workdir.path("day.results.csv");
    assert_results_match_csv(&workbook, &csv);

    // Codes keep their leading zeros, as text.
    let lines = read_results(&csv);
    let approved = lines
        .iter()
        .position(|line| line["order_id"] == "O20261125-01")
        .unwrap();
    let results = sheet(&workbook, "Results");
    let approval = cell(&results, approved + 1, 11);
    assert!(
        matches!(&approval, Data::String(code) if code.len() == 6 && code.starts_with('0')),
        "{approval:?}"
    );

    // Summary: every (status, currency) the CSV has, with the same rows and amounts.
    let (table, all_rows) = summary_table(&workbook);
    let expected = csv_totals(&csv);
    assert_eq!(all_rows, lines.len() as u64);
    assert_eq!(
        table.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the same statuses and currencies"
    );
    for (key, (rows, amount)) in &expected {
        let (found_rows, found_amount) = table[key];
        assert_eq!(found_rows, *rows, "{key:?} rows");
        assert!(
            (found_amount - amount).abs() < 1e-9,
            "{key:?}: {found_amount} against {amount}"
        );
    }
    assert!(table.contains_key(&("succeeded".into(), "JPY".into())));
    assert!(table.contains_key(&("succeeded".into(), "KWD".into())));

    // Needs a person: exactly the rows that did not succeed, each with what to do.
    let needs = sheet(&workbook, "Needs a person");
    let expected_rows: Vec<f64> = lines
        .iter()
        .filter(|line| line["status"] != "succeeded")
        .map(|line| line["row"].parse().unwrap())
        .collect();
    let found_rows: Vec<f64> = (1..needs.height())
        .map(|row| match cell(&needs, row, 0) {
            Data::Float(number) => number,
            other => panic!("row number {other:?}"),
        })
        .collect();
    assert_eq!(found_rows, expected_rows);
    assert!(
        expected_rows.len() >= 8,
        "the sample has many outcomes: {expected_rows:?}"
    );
    for row in 1..needs.height() {
        assert!(
            matches!(cell(&needs, row, 2), Data::String(advice) if advice.len() > 20),
            "row {row} says what to do"
        );
    }

    // What a person sees but a reader does not keep: the frozen header, filters, the amount
    // formats in each currency, and the chart.
    let results_xml = package_part(&workbook, "xl/worksheets/sheet1.xml").unwrap();
    assert!(results_xml.contains("state=\"frozen\""), "the header is frozen");
    assert!(results_xml.contains("<autoFilter"), "the header has filters");
    let styles = package_part(&workbook, "xl/styles.xml").unwrap();
    for pattern in [
        "#,##0.00 &quot;USD&quot;",
        "#,##0 &quot;JPY&quot;",
        "#,##0.000 &quot;KWD&quot;",
    ] {
        assert!(styles.contains(pattern), "{pattern} in the styles");
    }
    assert!(package_part(&workbook, "xl/charts/chart1.xml").is_some(), "a chart");

    // Like the CSV, it is as readable as the umask allows (it holds masked payees only).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&workbook).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, umask_mode(&workdir));
    }

    // `report` writes the same rows again from the ledger, sending nothing.
    let posts = sandbox.stats().refund_posts;
    workdir
        .command()
        .args(sandbox.arguments())
        .args([
            "report",
            "day.csv",
            "--workbook",
            "again.xlsx",
            "--results",
            "again.csv",
        ])
        .assert()
        .code(0)
        .stderr(predicate::str::contains("workbook: again.xlsx"));
    assert_eq!(sandbox.stats().refund_posts, posts, "report sends nothing");
    assert_results_match_csv(&workdir.path("again.xlsx"), &workdir.path("again.csv"));
    assert_eq!(summary_table(&workdir.path("again.xlsx")), (table, all_rows));
}

#[test]
fn every_row_succeeded_says_nobody_needs_to_look() {
    let workdir = Workdir::new();
    workdir.write(
        "day.csv",
        "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date\n\
         card,1234001,OK-1,1234567.89,USD,big,4111111111111111,1230\n",
    );
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir.run(&sandbox, "day.csv", &["--workbook", "day.xlsx"]).code(0);
    let needs = sheet(&workdir.path("day.xlsx"), "Needs a person");
    assert_eq!(needs.height(), 2);
    assert_eq!(cell(&needs, 1, 0), Data::String("Nobody: every row succeeded.".into()));
    let results = sheet(&workdir.path("day.xlsx"), "Results");
    assert_eq!(cell(&results, 1, 4), Data::Float(1_234_567.89));
}

#[test]
fn a_workbook_path_that_cannot_be_is_refused_before_anything_is_sent() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &day_file());
    let sandbox = TestSandbox::start(SandboxConfig::default());
    for (arguments, says) in [
        (vec!["--workbook", "-"], "a workbook is a binary file"),
        (vec!["--workbook", "day.csv"], "--workbook day.csv is the"),
        (
            vec!["--workbook", "same.out", "--results", "same.out"],
            "give each its own file",
        ),
    ] {
        workdir
            .run(&sandbox, "day.csv", &arguments)
            .code(2)
            .stderr(predicate::str::contains(says));
    }
    assert_eq!(sandbox.stats().refund_posts, 0);
    // `report` needs something to write.
    workdir
        .command()
        .args(sandbox.arguments())
        .args(["report", "day.csv"])
        .assert()
        .code(2);
}

#[test]
fn a_workbook_that_cannot_be_written_leaves_the_csv_and_exits_3() {
    let workdir = Workdir::new();
    workdir.write(
        "day.csv",
        "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date\n\
         card,1234001,NO-DIR-1,10.00,USD,x,4111111111111111,1230\n",
    );
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir
        .run(&sandbox, "day.csv", &["--workbook", "missing/day.xlsx"])
        .code(3)
        .stderr(predicate::str::contains("cannot write the workbook"))
        .stderr(predicate::str::contains("report day.csv --workbook"));
    let lines = read_results(&workdir.path("day.results.csv"));
    assert_eq!(lines[0]["status"], "succeeded");
    // Running again sends nothing and writes it.
    std::fs::create_dir(workdir.path("missing")).unwrap();
    workdir
        .run(&sandbox, "day.csv", &["--workbook", "missing/day.xlsx"])
        .code(0);
    assert_eq!(sandbox.stats().refund_posts, 1);
    assert_results_match_csv(&workdir.path("missing/day.xlsx"), &workdir.path("day.results.csv"));
}
