//! The file: the harness's model of the input, from which every version of it is written — its
//! rows and their payees — and the edits a person makes to it between (or during) runs.

use std::fmt;

use super::{
    APPROVING_ACCOUNTS, APPROVING_CARDS, DECLINING_ACCOUNTS, DECLINING_CARDS, HEADER, ODD_CARDS, PENDING_ACCOUNT,
};
use crate::support::Seeded;

/// Who a row pays back.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Payee {
    Card(&'static str),
    Bank(&'static str),
}

impl Payee {
    /// Whether the sandbox declines a refund to this payee.
    pub(super) fn declines(&self) -> bool {
        match self {
            Payee::Card(number) => DECLINING_CARDS.contains(number) || *number == ODD_CARDS[2],
            Payee::Bank(account) => DECLINING_ACCOUNTS.contains(account),
        }
    }
}

impl fmt::Display for Payee {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payee::Card(number) => write!(formatter, "card {number}"),
            Payee::Bank(account) => write!(formatter, "bank account {account}"),
        }
    }
}

/// One row of the input file.
#[derive(Clone, Debug)]
pub(super) struct Row {
    pub(super) terminal: &'static str,
    pub(super) order_id: String,
    pub(super) amount: String,
    pub(super) description: String,
    pub(super) payee: Payee,
}

impl Row {
    fn line(&self) -> String {
        let Row {
            terminal,
            order_id,
            amount,
            description,
            payee,
        } = self;
        match payee {
            Payee::Card(number) => {
                format!("card,{terminal},{order_id},{amount},USD,{description},{number},0929,,,\n")
            }
            Payee::Bank(account) => {
                format!("bank,{terminal},{order_id},{amount},USD,{description},,,{account},011000015,Grace Hopper\n")
            }
        }
    }
}

pub(super) fn file_text(rows: &[Row]) -> String {
    let mut text = HEADER.to_owned();
    for row in rows {
        text.push_str(&row.line());
    }
    text
}

/// An amount between 1.00 and 99.99.
pub(super) fn amount(random: &mut Seeded) -> String {
    format!("{}.{:02}", random.between(1, 99), random.between(0, 99))
}

pub(super) fn random_payee(random: &mut Seeded) -> Payee {
    if random.chance(60) {
        match random.weighted(&[60, 28, 12]) {
            0 => Payee::Card(random.pick(&APPROVING_CARDS)),
            1 => Payee::Card(random.pick(&DECLINING_CARDS)),
            _ => Payee::Card(random.pick(&ODD_CARDS)),
        }
    } else {
        match random.weighted(&[70, 20, 10]) {
            0 => Payee::Bank(random.pick(&APPROVING_ACCOUNTS)),
            1 => Payee::Bank(random.pick(&DECLINING_ACCOUNTS)),
            _ => Payee::Bank(PENDING_ACCOUNT),
        }
    }
}

/// A change to one row of the file, as a person makes it between (or during) runs.
#[derive(Clone, Debug)]
pub(super) enum Edit {
    Description {
        row: usize,
        text: String,
    },
    Amount {
        row: usize,
        amount: String,
    },
    /// Another card on a card row: fixing a declined card, or a mistaken swap.
    SwapCard {
        row: usize,
        card: &'static str,
    },
    /// The row becomes a bank row (with bank columns), or a card row.
    SwitchMethod {
        row: usize,
        to: Payee,
    },
    /// Upper case becomes lower case and the other way round.
    OrderIdCase {
        row: usize,
    },
    /// A zero-width space inside the order id (U+200B), as copying from a web page leaves it.
    ZeroWidthSpace {
        row: usize,
    },
    /// The order id's ASCII hyphen becomes a Unicode hyphen (U+2010), as a word processor does.
    UnicodeHyphen {
        row: usize,
    },
    CardInOrderId {
        row: usize,
        spelled: &'static str,
    },
    CardInDescription {
        row: usize,
        spelled: &'static str,
    },
    /// A second row for the row's order, by the other method: only ever made while a run is
    /// going (validation refuses such a file).
    RepeatByOtherMethod {
        row: usize,
        payee: Payee,
    },
}

impl Edit {
    pub(super) fn apply(&self, rows: &mut Vec<Row>) {
        match self {
            Edit::Description { row, text } => rows[*row].description.clone_from(text),
            Edit::Amount { row, amount } => rows[*row].amount.clone_from(amount),
            Edit::SwapCard { row, card } => rows[*row].payee = Payee::Card(card),
            Edit::SwitchMethod { row, to } => rows[*row].payee = to.clone(),
            Edit::OrderIdCase { row } => {
                let swapped = rows[*row]
                    .order_id
                    .chars()
                    .map(|character| {
                        if character.is_ascii_uppercase() {
                            character.to_ascii_lowercase()
                        } else {
                            character.to_ascii_uppercase()
                        }
                    })
                    .collect();
                rows[*row].order_id = swapped;
            }
            Edit::ZeroWidthSpace { row } => rows[*row].order_id.insert(2, '\u{200B}'),
            Edit::UnicodeHyphen { row } => rows[*row].order_id = rows[*row].order_id.replacen('-', "\u{2010}", 1),
            Edit::CardInOrderId { row, spelled } => rows[*row].order_id = (*spelled).to_owned(),
            Edit::CardInDescription { row, spelled } => rows[*row].description = format!("card {spelled}"),
            Edit::RepeatByOtherMethod { row, payee } => {
                let mut repeat = rows[*row].clone();
                repeat.payee = payee.clone();
                rows.push(repeat);
            }
        }
    }
}

impl fmt::Display for Edit {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Rows as a spreadsheet numbers them (the header is row 1), like the tool's messages.
        match self {
            Edit::Description { row, text } => write!(formatter, "row {}: description {text:?}", row + 2),
            Edit::Amount { row, amount } => write!(formatter, "row {}: amount {amount}", row + 2),
            Edit::SwapCard { row, card } => write!(formatter, "row {}: card {card}", row + 2),
            Edit::SwitchMethod { row, to } => write!(formatter, "row {}: method switched, {to}", row + 2),
            Edit::OrderIdCase { row } => write!(formatter, "row {}: order id's letter case swapped", row + 2),
            Edit::ZeroWidthSpace { row } => write!(formatter, "row {}: zero-width space in the order id", row + 2),
            Edit::UnicodeHyphen { row } => write!(formatter, "row {}: Unicode hyphen in the order id", row + 2),
            Edit::CardInOrderId { row, spelled } => write!(formatter, "row {}: order id {spelled:?}", row + 2),
            Edit::CardInDescription { row, spelled } => {
                write!(formatter, "row {}: description \"card {spelled}\"", row + 2)
            }
            Edit::RepeatByOtherMethod { row, payee } => {
                write!(formatter, "row {} repeated at the end, {payee}", row + 2)
            }
        }
    }
}
