//! The command line: every option, its environment variable, and its help text.
//!
//! Only parsing lives here (clap derive); [`crate::commands`] turns these into work. Every
//! option a team might fix once has an environment variable, listed in `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::{EnumValueParser, TypedValueParser as _};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::refund::Method;

/// Send a day's file of Payroc unreferenced refunds exactly once, with a ledger and a results CSV.
#[derive(Debug, Parser)]
#[command(
    name = "refund-batch",
    version,
    about,
    long_about = None,
    max_term_width = 100,
    after_help = crate::exit::EXIT_CODES_HELP
)]
pub struct Cli {
    /// Options every command shares.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where refunds go: the core's type, named here too because every command reads it from
/// [`GlobalArgs::environment`].
pub use crate::refund::Environment;

/// `--env` on the command line: parsed by clap and turned into the core's [`Environment`] at
/// once, so that the core does not depend on clap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnvironmentArg {
    /// An embedded local sandbox: no money moves.
    Sandbox,
    /// Payroc's test environment (api.uat.payroc.com).
    Uat,
    /// Payroc production: real money.
    Production,
}

impl From<EnvironmentArg> for Environment {
    fn from(value: EnvironmentArg) -> Environment {
        match value {
            EnvironmentArg::Sandbox => Environment::Sandbox,
            EnvironmentArg::Uat => Environment::Uat,
            EnvironmentArg::Production => Environment::Production,
        }
    }
}

/// `card` / `bank` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// Card refunds (POST /v1/refunds).
    Card,
    /// Bank-transfer refunds (POST /v1/bank-transfer-refunds).
    Bank,
}

impl From<MethodArg> for Method {
    fn from(value: MethodArg) -> Method {
        match value {
            MethodArg::Card => Method::Card,
            MethodArg::Bank => Method::Bank,
        }
    }
}

/// Options shared by every command, listed apart from each command's own in `--help`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// The ledger file. Default: the user's data directory (…/refund-batch/ledger.sqlite), so cron
    /// and manual runs share one history.
    #[arg(long, global = true, env = "REFUND_BATCH_LEDGER", value_name = "PATH")]
    pub ledger: Option<PathBuf>,
    /// Where refunds go. `sandbox` starts an embedded local sandbox: no money moves.
    #[arg(
        long = "env",
        global = true,
        env = "REFUND_BATCH_ENV",
        value_parser = EnumValueParser::<EnvironmentArg>::new().map(Environment::from),
        default_value = "sandbox"
    )]
    pub environment: Environment,
    /// API base URL (ending in /v1). When given, no embedded sandbox starts. Plain http only to loopback.
    #[arg(long, global = true, env = "PAYROC_API_URL", value_name = "URL")]
    pub api_url: Option<String>,
    /// Identity base URL (/authorize is appended). Plain http only to loopback.
    #[arg(long, global = true, env = "PAYROC_IDENTITY_URL", value_name = "URL")]
    pub identity_url: Option<String>,
    /// Read the API key from this file (mode 0600). Otherwise PAYROC_API_KEY is used; a key is never
    /// taken on the command line, where `ps` and shell history would show it.
    #[arg(long, global = true, value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,
    /// Print only warnings and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// No progress bar or progress lines.
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// More detail in logs (-v info, -vv debug).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Config file with team defaults (TOML). Default: ./refund-batch.toml, then
    /// `<config dir>/refund-batch/refund-batch.toml`. Precedence: option > environment > file > default.
    #[arg(long, global = true, env = "REFUND_BATCH_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate FILE, then send every row not yet done and write the results CSV.
    #[command(after_help = "Examples:
  refund-batch run samples/mixed.csv                      a sample on the embedded sandbox
  PAYROC_API_KEY=... refund-batch --env uat run day.csv   against Payroc's test environment
  refund-batch --env production run day.csv --yes --max-total 5000.00:USD   cron, with a cap
  refund-batch run day.csv --retry-failed                 send declined rows again once fixed
  refund-batch run day.csv --results - | jq -R .          the results CSV on stdout

Exit codes: 0 done, 1 rows need a person, 2 nothing sent (fix the input or options), 3 run again,
4 authentication, 5 the clock is off Payroc's, 75 the ledger is busy (try later).")]
    Run(RunArgs),
    /// Check FILE only: send nothing, print every problem and what would be sent.
    #[command(after_help = "Examples:
  refund-batch validate day.csv
  refund-batch validate export.csv --delimiter ';' --decimal-comma

Exit codes: 0 every row valid, 2 some rows invalid (each named by row and column).")]
    Validate(ValidateArgs),
    /// What the ledger knows: batches, rows by status, totals by currency.
    #[command(after_help = "Examples:
  refund-batch status                                     every batch and the totals
  refund-batch --env uat status day.csv --format json     one file's rows by status
  refund-batch --env uat status day.csv --write-results day.results.csv   the results again

A batch reads finished, running (a command holds the ledger) or interrupted.")]
    Status(StatusArgs),
    /// Write a file's results CSV or workbook again from the ledger; sends nothing.
    #[command(after_help = "Examples:
  refund-batch --env uat report day.csv --workbook day.xlsx       the day's workbook
  refund-batch --env uat report day.csv --results day.results.csv   the results CSV again

The rows are read as the ledger knows them under --env: give the environment the file was run in.")]
    Report(ReportArgs),
    /// Settle rows whose outcome is unknown by looking them up at Payroc.
    #[command(after_help = "Examples:
  refund-batch --env uat reconcile day.csv                settle unknown rows; sends nothing
  refund-batch --env uat reconcile day.csv --refresh      follow returns and reversals
  refund-batch --env uat reconcile day.csv --confirm-not-created 7,12   after you checked

Exit codes as for run.")]
    Reconcile(ReconcileArgs),
    /// Serve the local Payroc sandbox until stopped (prints its address on stdout).
    #[command(after_help = "Example:
  refund-batch sandbox --listen 127.0.0.1:0 --rate-500-after-create 0.1")]
    Sandbox(SandboxArgs),
    /// Print a shell completion script on stdout.
    #[command(after_help = "Example:
  refund-batch completions bash > ~/.local/share/bash-completion/completions/refund-batch")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout.
    #[command(after_help = "Example:
  refund-batch man > ~/.local/share/man/man1/refund-batch.1")]
    Man,
}

/// How the file is read.
#[derive(Debug, Args, Clone)]
pub struct InputArgs {
    /// The refund file (CSV, UTF-8, header row).
    pub file: PathBuf,
    /// The method for a file without a `method` column.
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,
    /// Field delimiter, for semicolon- or tab-separated exports (`;`, `tab`).
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<String>,
    /// Treat ids that differ only by letter case (`VAR-1`, `var-1`) as different orders. Without
    /// it the second such row is a duplicate: read as one order by a person, it would be two
    /// orders, so two refunds, at Payroc.
    #[arg(long)]
    pub allow_case_variants: bool,
    /// Amounts are written with a decimal comma (`1234,56`, `1.234,56`, `1 234,56`), as many
    /// European exports write them. Without it the point marks the fraction (`1234.56`,
    /// `1,234.56`). Either way a thousands separator is taken only in groups of three.
    #[arg(long)]
    pub decimal_comma: bool,
    /// Also write every problem the check finds to PATH as a CSV (row, column, problem), also when
    /// the run is refused for them: a list to sort and work through.
    #[arg(long, value_name = "PATH")]
    pub errors: Option<PathBuf>,
}

/// `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The file and how to read it.
    #[command(flatten)]
    pub input: InputArgs,
    /// Where the results go.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Requests per second at most.
    #[arg(long, env = "REFUND_BATCH_RATE", default_value_t = 20)]
    pub rate: u32,
    /// Requests in flight at most.
    #[arg(long, env = "REFUND_BATCH_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,
    /// Send the valid rows and report the invalid ones as `invalid`, instead of stopping.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Send declined and rejected rows again, under a new idempotency key.
    #[arg(long)]
    pub retry_failed: bool,
    /// With --retry-failed, also send rows whose card or account (for a rejected row: any detail)
    /// did not change since they failed. Without it such a row would most likely fail again.
    #[arg(long, requires = "retry_failed")]
    pub retry_unchanged: bool,
    /// Confirm a production run without a terminal to ask on.
    #[arg(long)]
    pub yes: bool,
    /// Connection and retry settings.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Refuse the run if the file would refund more than AMOUNT in CURRENCY (e.g. 5000.00:USD). Repeatable.
    #[arg(long, value_name = "AMOUNT:CURRENCY")]
    pub max_total: Vec<String>,
    /// When to look an order up at Payroc before its first key is sent: `auto` (uat and
    /// production) while this ledger has recorded sends in that environment for less than
    /// --precheck-days — a ledger vouches only for the time it has existed, and sandbox rows
    /// prove nothing about uat or production —, `always`, or `never`. Retries under a new key
    /// (`--retry-failed`) are looked up too, unless `never`.
    #[arg(long, env = "REFUND_BATCH_PRECHECK", value_enum, default_value = "auto")]
    pub precheck: Precheck,
    /// How many days back the lookup before sending reaches, and how long a ledger must have
    /// recorded sends in an environment before `--precheck auto` trusts it alone.
    #[arg(long, env = "REFUND_BATCH_PRECHECK_DAYS", default_value_t = 90)]
    pub precheck_days: u32,
}

/// Where a command that sends or settles rows writes what happened (`run`, `reconcile`).
#[derive(Debug, Args, Clone)]
pub struct OutputArgs {
    /// Where to write the results CSV. Default: `<input stem>.results.csv` beside the input;
    /// `-` writes it to stdout.
    #[arg(long, value_name = "PATH")]
    pub results: Option<PathBuf>,
    /// Start the results CSV with a UTF-8 byte-order mark, so Excel shows `€` and `–` as written
    /// (other readers and scripts are better without it, so it is off by default).
    #[arg(long, env = "REFUND_BATCH_RESULTS_BOM")]
    pub results_bom: bool,
    /// Also write the results as an Excel workbook (.xlsx): the rows typed (amounts as numbers,
    /// codes as text), a summary by status and currency with a chart, and the rows that need a
    /// person with what to do. Off by default: the CSV is the record, and a scheduled run wants
    /// one file; `refund-batch report FILE --workbook PATH` writes it from the ledger any time.
    #[arg(long, env = "REFUND_BATCH_WORKBOOK", value_name = "PATH")]
    pub workbook: Option<PathBuf>,
}

/// `run --precheck`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Precheck {
    /// Look up every row the ledger does not know yet.
    Always,
    /// While the ledger has recorded sends in the environment for less than --precheck-days.
    /// (`new-ledger`, the name of an earlier, narrower rule, means the same.)
    #[value(alias = "new-ledger")]
    Auto,
    /// Never (an old ledger's history is trusted, and a lost one is not guarded against).
    Never,
}

/// How requests are made and retried (shared by `run` and `reconcile`).
#[derive(Debug, Args, Clone)]
pub struct ConnectionArgs {
    /// Key namespace of rows an earlier version sent (its keys included it). Keys are now made
    /// from the order alone — one order is one refund, whoever sends it —, so this only finds
    /// those older rows in the ledger; it never keeps two refunds of one order apart.
    #[arg(long, env = "REFUND_BATCH_KEY_NAMESPACE", default_value = "default")]
    pub key_namespace: String,
    /// Retries per request on 408/429/5xx/network errors (same key, same bytes).
    #[arg(long, env = "REFUND_BATCH_MAX_RETRIES", default_value_t = 5)]
    pub max_retries: u32,
    /// First retry delay in milliseconds; doubled per retry, with jitter.
    #[arg(long, env = "REFUND_BATCH_RETRY_DELAY_MS", default_value_t = 500)]
    pub retry_delay_ms: u64,
    /// Longest single wait between retries (and the cap on Retry-After), in milliseconds.
    #[arg(long, env = "REFUND_BATCH_MAX_RETRY_DELAY_MS", default_value_t = 30_000)]
    pub max_retry_delay_ms: u64,
    /// Per-request timeout in seconds.
    #[arg(long, env = "REFUND_BATCH_TIMEOUT", default_value_t = 30)]
    pub timeout: u64,
    /// After Ctrl-C, how long requests in flight may take to finish, in milliseconds; then they
    /// are abandoned (their rows stay `sending` and are re-sent with the same key next run).
    #[arg(long, env = "REFUND_BATCH_SHUTDOWN_GRACE_MS", default_value_t = 5_000)]
    pub shutdown_grace_ms: u64,
}

/// `reconcile`.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The file and how to read it.
    #[command(flatten)]
    pub input: InputArgs,
    /// Where the results go.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Also look up `queued` rows, to see whether Payroc has settled them.
    #[arg(long)]
    pub include_queued: bool,
    /// Rows (e.g. `5,7`, as numbered in the results) or `all`: you confirm that Payroc has no
    /// refund for them. Rows first sent more than six days ago that the lookup still does not
    /// find then move to a new key, and the next run sends them.
    #[arg(long, value_name = "ROWS|all")]
    pub confirm_not_created: Option<String>,
    /// Also read again every refund whose Payroc status can still change (an approved card
    /// refund until its batch closes, a bank transfer until complete and then for
    /// --return-window-days, queued and partial rows) and record returns, reversals and
    /// declines. Sends no refund. Cron can run it daily after a batch.
    #[arg(long)]
    pub refresh: bool,
    /// With --refresh: for how many days after its first send a `complete` bank transfer is
    /// still read again. The customer's bank can return an ACH transfer after it settled, and
    /// then nothing was refunded. Card refunds are final once complete.
    #[arg(
        long,
        env = "REFUND_BATCH_RETURN_WINDOW_DAYS",
        default_value_t = 60,
        value_name = "DAYS"
    )]
    pub return_window_days: u32,
    /// Connection and retry settings.
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The file and how to read it.
    #[command(flatten)]
    pub input: InputArgs,
    /// Output: `text` messages on stderr, or one `json` object on stdout (counts, every problem by
    /// row and column, what would be refunded per currency).
    #[arg(long, value_enum, default_value = "text")]
    pub format: StatusFormat,
}

/// `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this file's batches and rows.
    pub file: Option<PathBuf>,
    /// How FILE was read when it was run.
    #[command(flatten)]
    pub reading: RereadArgs,
    /// Output format (on stdout).
    #[arg(long, value_enum, default_value = "text")]
    pub format: StatusFormat,
    /// With --write-results: start the CSV with a UTF-8 byte-order mark (for Excel).
    #[arg(long, requires = "write_results")]
    pub results_bom: bool,
    /// Write the file's results CSV from the ledger to PATH (needs FILE): for when a run could
    /// not write them.
    #[arg(long, value_name = "PATH", requires = "file")]
    pub write_results: Option<PathBuf>,
}

/// How `status FILE` and `report FILE` read a file again: as it was read when it was run, or
/// its rows would not be found in the ledger.
#[derive(Debug, Args, Clone)]
pub struct RereadArgs {
    /// The method for a file without a `method` column.
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,
    /// The field delimiter the file was run with (`;`, `tab`).
    #[arg(long, value_name = "CHAR", requires = "file")]
    pub delimiter: Option<String>,
    /// Key namespace the file was run with.
    #[arg(long, env = "REFUND_BATCH_KEY_NAMESPACE", default_value = "default")]
    pub key_namespace: String,
    /// The file was run with --allow-case-variants: ids that differ only by letter case are
    /// different orders, not duplicates.
    #[arg(long, requires = "file")]
    pub allow_case_variants: bool,
    /// The file was run with --decimal-comma: its amounts mark the fraction with a comma.
    #[arg(long, requires = "file")]
    pub decimal_comma: bool,
}

/// `report`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("outputs").required(true).multiple(true).args(["results", "workbook"]))]
pub struct ReportArgs {
    /// The file as it was run.
    pub file: PathBuf,
    /// How FILE was read when it was run.
    #[command(flatten)]
    pub reading: RereadArgs,
    /// Write the results CSV to PATH (`-`: stdout).
    #[arg(long, value_name = "PATH")]
    pub results: Option<PathBuf>,
    /// Start the results CSV with a UTF-8 byte-order mark (for Excel).
    #[arg(long, requires = "results")]
    pub results_bom: bool,
    /// Write the workbook (.xlsx) to PATH.
    #[arg(long, value_name = "PATH")]
    pub workbook: Option<PathBuf>,
}

/// `status --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// For people.
    Text,
    /// For programs.
    Json,
}

/// `sandbox`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Accept only this API key (from the environment, never the command line). Default: any key.
    #[arg(
        long = "require-api-key",
        env = "SANDBOX_API_KEY",
        hide_env_values = true,
        value_name = "KEY",
        hide = true
    )]
    pub api_key: Option<String>,
    /// Added latency per refund request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fraction of POSTs answered 429 with Retry-After (nothing created).
    #[arg(long, default_value_t = 0.0)]
    pub rate_429: f64,
    /// Fraction of POSTs answered 503 with Retry-After (nothing created).
    #[arg(long, default_value_t = 0.0)]
    pub rate_503: f64,
    /// Fraction of creating POSTs answered 500 although the refund was made.
    #[arg(long, default_value_t = 0.0)]
    pub rate_500_after_create: f64,
    /// Fraction of creating POSTs whose connection is dropped after the refund was made.
    #[arg(long, default_value_t = 0.0)]
    pub rate_drop_after_create: f64,
    /// Retry-After value in milliseconds (sent as whole seconds and as retry-after-ms).
    #[arg(long, default_value_t = 1000)]
    pub retry_after_ms: u64,
    /// Advertised token lifetime in seconds (expires_in).
    #[arg(long, default_value_t = 3600)]
    pub token_lifetime_secs: u64,
    /// Tokens really die after this many milliseconds (earlier than advertised).
    #[arg(long)]
    pub token_dies_after_ms: Option<u64>,
    /// Seed for faults and ids, so runs repeat.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}
