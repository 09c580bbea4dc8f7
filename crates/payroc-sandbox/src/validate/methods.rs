//! The refund method of a body — a keyed card or token for a card refund, an ACH account or token
//! for a bank transfer — validated with Payroc's limits, and the masked summary a response shows.

use super::*;

pub(super) fn card_method(c: &mut Ctx, m: &Map<String, Value>) -> Option<(Value, Outcome)> {
    let v = c.required(m, "", "refundMethod")?;
    let p = "refundMethod";
    let Some(t) = v.get("type") else {
        c.object(v, p, &["type", "cardDetails", "accountType", "token", "secCode"]);
        c.push("refundMethod.type", "must not be null", "type must not be null");
        return None;
    };
    match t.as_str() {
        Some("card") => {
            let rm = c.object(v, p, &["type", "cardDetails", "accountType"])?;
            c.enumeration(rm, p, "accountType", false, &["checking", "savings"]);
            let cd = c.required(rm, p, "cardDetails")?;
            let cp = "refundMethod.cardDetails";
            let entry = cd.get("entryMethod").and_then(Value::as_str);
            match entry {
                Some("keyed") => {}
                Some("raw" | "icc" | "swiped") => {
                    c.object(
                        cd,
                        cp,
                        &[
                            "entryMethod",
                            "device",
                            "rawData",
                            "iccData",
                            "swipedData",
                            "cardholderName",
                            "cardholderSignature",
                            "pinDetails",
                            "ebtDetails",
                            "fallbackReason",
                            "trackData",
                        ],
                    );
                    c.push(
                        "refundMethod.cardDetails.entryMethod",
                        "entry method needs a physical device",
                        "entryMethod raw, icc and swiped need a physical device; the sandbox supports keyed",
                    );
                    return None;
                }
                _ => {
                    c.object(cd, cp, &["entryMethod"]);
                    c.push(
                        "refundMethod.cardDetails.entryMethod",
                        "must be one of: raw, icc, swiped, keyed",
                        "entryMethod must be one of: raw, icc, swiped, keyed",
                    );
                    return None;
                }
            }
            let cdm = c.object(
                cd,
                cp,
                &[
                    "entryMethod",
                    "keyedData",
                    "cardholderName",
                    "cardholderSignature",
                    "pinDetails",
                    "ebtDetails",
                ],
            )?;
            let name = c.string(cdm, cp, "cardholderName", false, 1, 50);
            let kd = c.required(cdm, cp, "keyedData")?;
            let kp = "refundMethod.cardDetails.keyedData";
            match kd.get("dataFormat").and_then(Value::as_str) {
                Some("plainText") => {}
                Some("fullyEncrypted" | "partiallyEncrypted") => {
                    c.push(
                        "refundMethod.cardDetails.keyedData.dataFormat",
                        "encrypted card data is not supported by the sandbox",
                        "dataFormat fullyEncrypted and partiallyEncrypted need a device key; the sandbox supports plainText",
                    );
                    return None;
                }
                _ => {
                    c.push(
                        "refundMethod.cardDetails.keyedData.dataFormat",
                        "must be one of: plainText, fullyEncrypted, partiallyEncrypted",
                        "dataFormat must be one of: plainText, fullyEncrypted, partiallyEncrypted",
                    );
                    return None;
                }
            }
            let km = c.object(
                kd,
                kp,
                &["dataFormat", "cardNumber", "expiryDate", "cvv", "issueNumber", "device"],
            )?;
            let number = c.string(km, kp, "cardNumber", true, 12, 19);
            let number = number.filter(|n| c.digits(&join(kp, "cardNumber"), "cardNumber", n));
            let expiry = c.string(km, kp, "expiryDate", false, 4, 4);
            if let Some(e) = expiry
                && !is_mmyy(e)
            {
                c.push(
                    &join(kp, "expiryDate"),
                    "must match MMYY",
                    "expiryDate must be four digits in the format MMYY",
                );
            }
            if let Some(cvv) = c.string(km, kp, "cvv", false, 3, 4) {
                c.digits(&join(kp, "cvv"), "cvv", cvv);
            }
            if let Some(n) = c.string(km, kp, "issueNumber", false, 1, 2) {
                c.digits(&join(kp, "issueNumber"), "issueNumber", n);
            }
            if let Some(d) = km.get("device").filter(|v| !v.is_null()) {
                let dp = join(kp, "device");
                if let Some(dm) = c.object(
                    d,
                    &dp,
                    &["model", "serialNumber", "category", "firmwareVersion", "config"],
                ) {
                    c.string(dm, &dp, "model", true, 1, usize::MAX);
                    c.string(dm, &dp, "serialNumber", true, 1, 64);
                    c.enumeration(dm, &dp, "category", false, &["attended", "unattended"]);
                }
            }
            let number = number?;
            let outcome = match number {
                CARD_DECLINED => Outcome::Declined,
                CARD_REFERRAL => Outcome::Referral,
                CARD_QUEUED => Outcome::Queued,
                CARD_KEEP_CARD => Outcome::KeepCard,
                CARD_PARTIAL => Outcome::Partial,
                CARD_APPROVED_BUT_DECLINED => Outcome::ApprovedButDeclined,
                _ => Outcome::Approved,
            };
            let mut card = json!({
                "type": brand(number),
                "entryMethod": "keyed",
                "cardNumber": mask_pan(number),
                "expiryDate": expiry.unwrap_or("1230"),
            });
            if let Some(n) = name {
                card["cardholderName"] = json!(n);
            }
            Some((card, outcome))
        }
        Some("secureToken") => {
            let (token, _) = secure_token(c, v)?;
            let outcome = token_outcome(token);
            let card = json!({
                "type": "Visa Credit",
                "entryMethod": "keyed",
                "cardNumber": format!("400000******{}", last4(token)),
                "expiryDate": "1230",
                "secureToken": token_summary(token),
            });
            Some((card, outcome))
        }
        _ => {
            c.push(
                "refundMethod.type",
                "must be one of: card, secureToken",
                "type must be one of: card, secureToken",
            );
            None
        }
    }
}

pub(super) fn bank_method(c: &mut Ctx, m: &Map<String, Value>) -> Option<(Value, Outcome)> {
    let v = c.required(m, "", "refundMethod")?;
    let p = "refundMethod";
    match v.get("type").and_then(Value::as_str) {
        Some("ach") => {
            let rm = c.object(
                v,
                p,
                &[
                    "type",
                    "nameOnAccount",
                    "accountNumber",
                    "routingNumber",
                    "accountType",
                    "secCode",
                ],
            )?;
            let name = c.string(rm, p, "nameOnAccount", true, 1, 50);
            let acct = c.string(rm, p, "accountNumber", true, 4, 17);
            let acct = acct.filter(|a| c.digits("refundMethod.accountNumber", "accountNumber", a));
            let routing = c.string(rm, p, "routingNumber", true, 9, 9);
            let routing = routing.filter(|r| c.digits("refundMethod.routingNumber", "routingNumber", r));
            let account_type = c.enumeration(rm, p, "accountType", false, &["checking", "savings"]);
            let sec = c.enumeration(rm, p, "secCode", false, &["web", "tel", "ccd", "ppd"]);
            let (name, acct, routing) = (name?, acct?, routing?);
            let outcome = account_outcome(acct);
            let mut ba = json!({
                "type": "ach",
                "nameOnAccount": name,
                "accountNumber": format!("****{}", last4(acct)),
                "routingNumber": format!("*****{}", last4(routing)),
            });
            if let Some(s) = sec {
                ba["secCode"] = json!(s);
            }
            if let Some(t) = account_type {
                ba["accountType"] = json!(t);
            }
            Some((ba, outcome))
        }
        Some("secureToken") => {
            let (token, sec) = secure_token(c, v)?;
            let outcome = token_outcome(token);
            let mut ba = json!({
                "type": "ach",
                "nameOnAccount": "Sandbox Customer",
                "accountNumber": format!("****{}", last4(token)),
                "routingNumber": "*****0000",
                "secureToken": token_summary(token),
            });
            if let Some(s) = sec {
                ba["secCode"] = json!(s);
            }
            Some((ba, outcome))
        }
        None if v.get("type").is_none() => {
            c.object(
                v,
                p,
                &[
                    "type",
                    "nameOnAccount",
                    "accountNumber",
                    "routingNumber",
                    "accountType",
                    "secCode",
                    "token",
                ],
            );
            c.push("refundMethod.type", "must not be null", "type must not be null");
            None
        }
        _ => {
            c.push(
                "refundMethod.type",
                "must be one of: ach, secureToken",
                "type must be one of: ach, secureToken",
            );
            None
        }
    }
}

/// Returns (token, secCode).
pub(super) fn secure_token<'a>(c: &mut Ctx, v: &'a Value) -> Option<(&'a str, Option<&'a str>)> {
    let p = "refundMethod";
    let m = c.object(v, p, &["type", "token", "accountType", "secCode"])?;
    let token = c.string(m, p, "token", true, 12, 19);
    c.enumeration(m, p, "accountType", false, &["checking", "savings"]);
    let sec = c.enumeration(m, p, "secCode", false, &["web", "tel", "ccd", "ppd"]);
    Some((token?, sec))
}

pub(super) fn token_summary(token: &str) -> Value {
    json!({
        "secureTokenId": format!("SBX-{}", last4(token)),
        "customerName": "Sandbox Customer",
        "token": token,
        "status": "notValidated",
    })
}

pub(super) fn brand(pan: &str) -> &'static str {
    match pan.as_bytes().first() {
        Some(b'4') => "Visa Credit",
        Some(b'5' | b'2') => "MasterCard",
        Some(b'3') => "American Express",
        Some(b'6') => "Discover",
        _ => "Unknown",
    }
}

/// First 6 + `******` + last 4, as Payroc returns card numbers.
pub(crate) fn mask_pan(pan: &str) -> String {
    format!("{}******{}", &pan[..6], last4(pan))
}

pub(super) fn last4(s: &str) -> &str {
    // Callers pass ASCII strings of length >= 4 (validated).
    let n = s.len();
    s.get(n.saturating_sub(4)..).unwrap_or("")
}
