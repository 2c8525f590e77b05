//! Each account's transaction history, generated deterministically and anchored to the
//! calendar: whether a day has an entry, and its amount, depend only on (customer, account,
//! date), so the same customer always gets the same history and a later day only adds to it.
//! Entries of the last two days are pending under an id of their own and book under another;
//! some pending card pre-authorisations never book and disappear.

use chrono::{Datelike, Duration, NaiveDate};

/// How far back the bank keeps history (15 months).
pub const HORIZON_DAYS: i64 = 456;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Salary,
    Rent,
    DirectDebit,
    CardPurchase,
    CashWithdrawal,
    TransferOut,
    TransferIn,
    Fee,
    Interest,
}

impl Kind {
    /// UK Open Banking's {Code, SubCode}.
    pub fn ob_code(self) -> (&'static str, &'static str) {
        match self {
            Kind::Salary => ("ReceivedCreditTransfer", "SalaryPayment"),
            Kind::Rent => ("IssuedCreditTransfer", "StandingOrder"),
            Kind::DirectDebit => ("IssuedDirectDebit", "DirectDebitPayment"),
            Kind::CardPurchase => ("CardTransaction", "PointOfSale"),
            Kind::CashWithdrawal => ("CardTransaction", "CashWithdrawal"),
            Kind::TransferOut => ("IssuedCreditTransfer", "InternalTransfer"),
            Kind::TransferIn => ("ReceivedCreditTransfer", "InternalTransfer"),
            Kind::Fee => ("AccountManagement", "Fees"),
            Kind::Interest => ("AccountManagement", "Interest"),
        }
    }

    /// ISO 20022 domain-family-subfamily, as the Berlin Group API gives it.
    pub fn iso_code(self) -> &'static str {
        match self {
            Kind::Salary => "PMNT-RCDT-SALA",
            Kind::Rent => "PMNT-ICDT-STDO",
            Kind::DirectDebit => "PMNT-IDDT-PMDD",
            Kind::CardPurchase => "PMNT-CCRD-POSD",
            Kind::CashWithdrawal => "PMNT-CCRD-CWDL",
            Kind::TransferOut => "PMNT-ICDT-BOOK",
            Kind::TransferIn => "PMNT-RCDT-BOOK",
            Kind::Fee => "ACMT-MDOP-FEES",
            Kind::Interest => "ACMT-MDOP-INTR",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The id it is booked under, and the id it carries while pending.
    pub booked_id: String,
    pub pending_id: String,
    pub date: NaiveDate,
    pub pending: bool,
    /// Signed, in minor units.
    pub amount_minor: i64,
    pub kind: Kind,
    pub counterparty: String,
    pub counterparty_account: Option<String>,
    pub description: String,
    pub merchant_category_code: Option<&'static str>,
}

/// One of the customer's accounts, as the generator needs it.
#[derive(Debug, Clone)]
pub struct LedgerAccount {
    pub external_id: String,
    pub number: String,
    pub checking: bool,
    pub savings: bool,
    pub card: bool,
    pub currency: String,
}

/// FNV-1a over the parts: a stable number per (customer, account, day, purpose).
fn hash(parts: &[&str], salt: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ salt;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    // A final mix so nearby inputs spread over the whole range.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

const MERCHANTS: [(&str, &str, i64, i64); 12] = [
    ("Tesco", "5411", 1500, 12000),
    ("Whole Foods Market", "5411", 1500, 12000),
    ("Lidl", "5411", 1500, 9000),
    ("Pret A Manger", "5814", 400, 2500),
    ("Nando's", "5812", 1500, 6000),
    ("Starbucks", "5814", 400, 1500),
    ("TfL Travel", "4111", 300, 2000),
    ("Uber", "4121", 800, 7000),
    ("Shell", "5541", 3000, 7000),
    ("Boots Pharmacy", "5912", 500, 4000),
    ("Amazon", "5999", 1000, 30000),
    ("Booking.com", "7011", 8000, 60000),
];

const SUBSCRIPTIONS: [(&str, &str, i64, u32); 3] = [
    ("Netflix", "4899", 1599, 8),
    ("Spotify", "5815", 1099, 14),
    ("The Gym Group", "7997", 2499, 5),
];

const EMPLOYERS: [&str; 4] = ["Acme Corp", "Globex Ltd", "Initech", "Umbrella plc"];

/// The entries of `account` (one of `portfolio`) dated within [today − horizon, today],
/// newest first. Own transfers go monthly from each checking account to the customer's first
/// savings account in the same currency, and appear on both sides.
pub fn entries(
    customer: &str,
    portfolio: &[LedgerAccount],
    account: &LedgerAccount,
    today: NaiveDate,
) -> Vec<Entry> {
    let mut out = Vec::new();
    let start = today - Duration::days(HORIZON_DAYS);
    let savings_for = |from: &LedgerAccount| {
        portfolio
            .iter()
            .find(|a| a.savings && a.currency == from.currency)
    };
    let h = |purpose: &str, day: &str| hash(&[customer, &account.external_id, purpose, day], 7);
    let base = hash(&[customer, &account.external_id], 1);
    let mut day = start;
    while day <= today {
        let key = day.format("%Y-%m-%d").to_string();
        let mut push = |purpose: &str,
                        amount: i64,
                        kind: Kind,
                        cp: &str,
                        cp_account: Option<String>,
                        description: String,
                        mcc: Option<&'static str>| {
            let id = h(purpose, &key);
            out.push(Entry {
                booked_id: format!("TX-{id:016x}"),
                pending_id: format!("PTX-{:016x}", id.rotate_left(17)),
                date: day,
                pending: false,
                amount_minor: amount,
                kind,
                counterparty: cp.to_string(),
                counterparty_account: cp_account,
                description,
                merchant_category_code: mcc,
            });
        };
        let month = day.format("%b %Y").to_string().to_uppercase();
        if account.checking {
            if day.day() == 25 {
                let salary = 250_000 + (base % 400_000) as i64;
                // Every fourth customer's income dropped by 40% from October 2026.
                let dropped = base.is_multiple_of(4)
                    && day >= NaiveDate::from_ymd_opt(2026, 10, 1).unwrap_or(day);
                let salary = if dropped { salary * 6 / 10 } else { salary };
                push(
                    "salary",
                    salary,
                    Kind::Salary,
                    EMPLOYERS[(base % 4) as usize],
                    None,
                    format!("SALARY {month}"),
                    None,
                );
            }
            if day.day() == 1 {
                let rent = 90_000 + ((base >> 8) % 110_000) as i64;
                push(
                    "rent",
                    -rent,
                    Kind::Rent,
                    "Landlord Properties Ltd",
                    None,
                    format!("RENT {month}"),
                    None,
                );
                push(
                    "fee",
                    -300,
                    Kind::Fee,
                    "Green Bank",
                    None,
                    "Monthly account fee".into(),
                    None,
                );
            }
            if day.day() == 12 {
                let power = 4_000 + (h("power", &key) % 6_000) as i64;
                push(
                    "power",
                    -power,
                    Kind::DirectDebit,
                    "City Power & Water",
                    None,
                    "Direct debit".into(),
                    None,
                );
            }
            if day.day() == 2
                && let Some(savings) = savings_for(account)
            {
                let amount = 10_000 + ((base >> 16) % 40_000) as i64;
                push(
                    "transfer",
                    -amount,
                    Kind::TransferOut,
                    "Own savings",
                    Some(savings.number.clone()),
                    "Transfer to savings".into(),
                    None,
                );
            }
            for (i, (name, mcc, price, on_day)) in SUBSCRIPTIONS.iter().enumerate() {
                if (base >> (20 + i)) & 1 == 1 && day.day() == *on_day {
                    // Netflix's price rose in July 2026.
                    let price =
                        if i == 0 && day >= NaiveDate::from_ymd_opt(2026, 7, 1).unwrap_or(day) {
                            1799
                        } else {
                            *price
                        };
                    push(
                        name,
                        -price,
                        Kind::CardPurchase,
                        name,
                        None,
                        format!("{name} subscription"),
                        Some(mcc),
                    );
                }
            }
            // About one card purchase a day, and a cash withdrawal now and then.
            let roll = h("card", &key);
            if roll % 10 < 9 {
                let (name, mcc, low, high) =
                    MERCHANTS[((roll >> 8) % MERCHANTS.len() as u64) as usize];
                let amount = low + ((roll >> 20) % (high - low) as u64) as i64;
                push(
                    "card",
                    -amount,
                    Kind::CardPurchase,
                    name,
                    None,
                    format!("Card purchase {name}"),
                    Some(mcc),
                );
            }
            if h("atm", &key).is_multiple_of(30) {
                push(
                    "atm",
                    -(2_000 + (h("atm-amount", &key) % 18_000) as i64),
                    Kind::CashWithdrawal,
                    "ATM Withdrawal",
                    None,
                    "Cash withdrawal".into(),
                    Some("6011"),
                );
            }
        }
        if account.savings {
            for from in portfolio.iter().filter(|a| {
                a.checking && savings_for(a).is_some_and(|s| s.external_id == account.external_id)
            }) {
                if day.day() == 2 {
                    let from_base = hash(&[customer, &from.external_id], 1);
                    let amount = 10_000 + ((from_base >> 16) % 40_000) as i64;
                    push(
                        &format!("transfer-in-{}", from.external_id),
                        amount,
                        Kind::TransferIn,
                        "Own current account",
                        Some(from.number.clone()),
                        "Transfer from current account".into(),
                        None,
                    );
                }
            }
            if (day + Duration::days(1)).day() == 1 {
                push(
                    "interest",
                    100 + (base % 900) as i64,
                    Kind::Interest,
                    "Interest",
                    None,
                    "Interest".into(),
                    None,
                );
            }
        }
        if account.card && h("card-only", &key) % 7 < 3 {
            let roll = h("card-purchase", &key);
            let (name, mcc, low, high) = MERCHANTS[(roll % MERCHANTS.len() as u64) as usize];
            push(
                "card",
                -(low + ((roll >> 20) % (high - low) as u64) as i64),
                Kind::CardPurchase,
                name,
                None,
                name.to_string(),
                Some(mcc),
            );
        }
        day += Duration::days(1);
    }
    // The last two days are pending; one in eight pending card purchases is a
    // pre-authorisation that will never book (it is dropped once its day is past).
    // Subscriptions are charged outright, never pre-authorised.
    out.retain_mut(|e| {
        let recent = (today - e.date).num_days() < 2;
        let subscription = SUBSCRIPTIONS.iter().any(|s| s.0 == e.counterparty);
        let preauth = e.kind == Kind::CardPurchase
            && !subscription
            && hash(&[&e.booked_id], 3).is_multiple_of(8);
        e.pending = recent;
        recent || !preauth
    });
    out.sort_by(|a, b| {
        b.date
            .cmp(&a.date)
            .then_with(|| b.booked_id.cmp(&a.booked_id))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn portfolio() -> Vec<LedgerAccount> {
        let a = |id: &str, checking, savings| LedgerAccount {
            external_id: id.into(),
            number: id.trim_start_matches("GB-ACC-").into(),
            checking,
            savings,
            card: false,
            currency: "USD".into(),
        };
        vec![a("GB-ACC-1", true, false), a("GB-ACC-2", false, true)]
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn history_is_deterministic_calendar_anchored_and_long() {
        let p = portfolio();
        let today = day("2026-12-02");
        let a = entries("c1", &p, &p[0], today);
        assert_eq!(a, entries("c1", &p, &p[0], today));
        assert_ne!(a, entries("c2", &p, &p[0], today));
        let oldest = a.last().unwrap().date;
        assert!((today - oldest).num_days() >= 13 * 30, "{oldest}");
        assert!((350..=600).contains(&a.len()), "{}", a.len());
        // A later day keeps every earlier booked entry (same id, same amount).
        let later = entries("c1", &p, &p[0], today + Duration::days(10));
        for e in a
            .iter()
            .filter(|e| !e.pending && e.date >= today - Duration::days(400))
        {
            assert!(
                later.iter().any(|l| l.booked_id == e.booked_id
                    && l.amount_minor == e.amount_minor
                    && !l.pending),
                "{e:?}"
            );
        }
    }

    #[test]
    fn pending_items_book_later_or_disappear() {
        let p = portfolio();
        let today = day("2026-12-02");
        let now = entries("c1", &p, &p[0], today);
        let pending: Vec<&Entry> = now.iter().filter(|e| e.pending).collect();
        assert!(!pending.is_empty());
        assert!(pending.iter().all(|e| (today - e.date).num_days() < 2));
        let later = entries("c1", &p, &p[0], today + Duration::days(5));
        for e in pending {
            let booked = later.iter().find(|l| l.booked_id == e.booked_id);
            if let Some(b) = booked {
                assert!(!b.pending && b.booked_id != e.pending_id);
            }
        }
    }

    #[test]
    fn own_transfers_appear_on_both_sides() {
        let p = portfolio();
        let today = day("2026-12-02");
        let out: Vec<Entry> = entries("c1", &p, &p[0], today)
            .into_iter()
            .filter(|e| e.kind == Kind::TransferOut)
            .collect();
        let incoming: Vec<Entry> = entries("c1", &p, &p[1], today)
            .into_iter()
            .filter(|e| e.kind == Kind::TransferIn)
            .collect();
        assert!(out.len() >= 13);
        assert_eq!(out.len(), incoming.len());
        for (o, i) in out.iter().zip(&incoming) {
            assert_eq!(o.date, i.date);
            assert_eq!(o.amount_minor, -i.amount_minor);
            assert_eq!(o.counterparty_account.as_deref(), Some("2"));
            assert_eq!(i.counterparty_account.as_deref(), Some("1"));
        }
    }

    #[test]
    fn subscriptions_are_charged_every_month_without_a_gap() {
        let p = portfolio();
        let today = day("2026-12-02");
        let mut seen = 0;
        for customer in 0..40 {
            let history = entries(&format!("c{customer}"), &p, &p[0], today);
            for (name, _, _, _) in SUBSCRIPTIONS {
                let mut months: Vec<String> = history
                    .iter()
                    .filter(|e| e.counterparty == name && !e.pending)
                    .map(|e| e.date.format("%Y-%m").to_string())
                    .collect();
                if months.is_empty() {
                    continue;
                }
                seen += 1;
                months.reverse();
                let first =
                    NaiveDate::parse_from_str(&format!("{}-01", months[0]), "%Y-%m-%d").unwrap();
                let expected: Vec<String> = (0..months.len() as u32)
                    .map(|m| (first + chrono::Months::new(m)).format("%Y-%m").to_string())
                    .collect();
                assert_eq!(months, expected, "c{customer} {name}");
                assert!(months.len() >= 13, "c{customer} {name}: {}", months.len());
            }
        }
        assert!(seen > 10, "too few subscriptions to check: {seen}");
    }
}
