//! PII detection and masking in-process, in the place of LiteLLM's
//! `presidio` guardrail: e-mail addresses, phone numbers, payment card
//! numbers and IP addresses are replaced by Presidio's placeholders
//! (`<EMAIL_ADDRESS>`, `<PHONE_NUMBER>`, `<CREDIT_CARD>`, `<IP_ADDRESS>`).
//!
//! No Presidio server is called, so entities that need Presidio's
//! named-entity models (`PERSON`, `LOCATION`, ...) are refused at startup
//! rather than silently left unmasked.
//!
//! Every detector is a regex for candidates plus a check (the Luhn sum for
//! cards, `std::net` parsing for IPs, digit counts and neighbours for
//! phones), so a random 16-digit number or a `12:30:45` time is left alone.
//! Detectors run in a fixed order on the text the previous one left: e-mail
//! first (addresses hold digits), then IP addresses, cards, phones.

use regex::Regex;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

/// A PII entity type we detect, named as Presidio names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiEntity {
    /// `name@example.com`.
    EmailAddress,
    /// International (`+44 20 7946 0958`) and US (`(555) 123-4567`) forms.
    PhoneNumber,
    /// 13 to 19 digits, spaces or dashes between, passing the Luhn check.
    CreditCard,
    /// IPv4 and IPv6 addresses.
    IpAddress,
}

impl PiiEntity {
    /// Every entity, in detection order.
    pub const ALL: [Self; 4] = [
        Self::EmailAddress,
        Self::IpAddress,
        Self::CreditCard,
        Self::PhoneNumber,
    ];

    /// Presidio's name (`EMAIL_ADDRESS`), as `pii_entities_config` keys it.
    pub fn name(self) -> &'static str {
        match self {
            Self::EmailAddress => "EMAIL_ADDRESS",
            Self::PhoneNumber => "PHONE_NUMBER",
            Self::CreditCard => "CREDIT_CARD",
            Self::IpAddress => "IP_ADDRESS",
        }
    }

    /// The entity for a Presidio name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The text that replaces a match: `<EMAIL_ADDRESS>`.
    pub fn placeholder(self) -> String {
        format!("<{}>", self.name())
    }
}

/// The compiled patterns, built once per guardrail set; building them is
/// the only fallible step, so a bad pattern is a startup error, not a
/// panic.
#[derive(Debug, Clone)]
pub struct PiiPatterns {
    email: Regex,
    card: Regex,
    phone_intl: Regex,
    phone_us: Regex,
    ipv4: Regex,
    ipv6: Regex,
}

impl PiiPatterns {
    /// Compiles the patterns.
    pub fn new() -> Result<Self, regex::Error> {
        Ok(Self {
            email: Regex::new(
                r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}",
            )?,
            // 13 to 19 digits, single spaces or dashes between them.
            card: Regex::new(r"\d(?:[ \-]?\d){12,18}")?,
            // `+` and a country code, then groups (an area code may be in
            // brackets).
            phone_intl: Regex::new(r"\+\d{1,3}(?:[ .\-]?\(?\d{1,5}\)?){1,5}")?,
            // US forms: `555-123-4567`, `(555) 123-4567`, `+1 555.123.4567`,
            // `1-555-123-4567`; a bare run of ten digits is not taken (an id,
            // a timestamp).
            phone_us: Regex::new(r"(?:\+?1[ .\-]?)?(?:\(\d{3}\)[ ]?|\d{3}[ .\-])\d{3}[ .\-]\d{4}")?,
            ipv4: Regex::new(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")?,
            // Hex groups and colons (and dots for a trailing IPv4), parsed
            // after.
            ipv6: Regex::new(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")?,
        })
    }

    /// Where `entity` occurs in `text`, in order, not overlapping.
    pub fn find(&self, entity: PiiEntity, text: &str) -> Vec<Range<usize>> {
        match entity {
            PiiEntity::EmailAddress => self
                .email
                .find_iter(text)
                .map(|m| m.range())
                .filter(|r| isolated(text, r, |c| c.is_alphanumeric() || c == '@' || c == '_'))
                .collect(),
            PiiEntity::IpAddress => self.ip_addresses(text),
            PiiEntity::CreditCard => self
                .card
                .find_iter(text)
                .map(|m| m.range())
                .filter(|r| isolated_number(text, r) && !text[..r.start].ends_with('+'))
                .filter(|r| luhn_valid(&text[r.clone()]))
                .collect(),
            PiiEntity::PhoneNumber => {
                let mut found: Vec<Range<usize>> = Vec::new();
                for re in [&self.phone_intl, &self.phone_us] {
                    for m in re.find_iter(text) {
                        let r = m.range();
                        let digits = m.as_str().chars().filter(char::is_ascii_digit).count();
                        if (8..=15).contains(&digits)
                            && isolated_number(text, &r)
                            && !found.iter().any(|f| f.start < r.end && r.start < f.end)
                        {
                            found.push(r);
                        }
                    }
                }
                found.sort_by_key(|r| r.start);
                found
            }
        }
    }

    /// Replaces every occurrence of `entity` in `text` with its
    /// placeholder; returns how many were replaced.
    pub fn mask(&self, entity: PiiEntity, text: &mut String) -> usize {
        let found = self.find(entity, text);
        let placeholder = entity.placeholder();
        for r in found.iter().rev() {
            text.replace_range(r.clone(), &placeholder);
        }
        found.len()
    }

    fn ip_addresses(&self, text: &str) -> Vec<Range<usize>> {
        let mut found: Vec<Range<usize>> = Vec::new();
        for m in self.ipv6.find_iter(text) {
            // A sentence may end right after the address.
            let trimmed = m.as_str().trim_end_matches('.');
            let r = m.start()..m.start() + trimmed.len();
            if trimmed.matches(':').count() >= 2
                && trimmed.parse::<Ipv6Addr>().is_ok()
                && isolated(text, &r, |c| c.is_alphanumeric() || c == '_')
            {
                found.push(r);
            }
        }
        for m in self.ipv4.find_iter(text) {
            let r = m.range();
            let inside_v6 = found.iter().any(|f| f.start <= r.start && r.end <= f.end);
            if !inside_v6 && m.as_str().parse::<Ipv4Addr>().is_ok() && isolated_number(text, &r) {
                found.push(r);
            }
        }
        found.sort_by_key(|r| r.start);
        found
    }
}

/// True when the characters just outside `r` do not satisfy `joins`.
fn isolated(text: &str, r: &Range<usize>, joins: impl Fn(char) -> bool) -> bool {
    let before = text[..r.start].chars().next_back();
    let after = text[r.end..].chars().next();
    !before.is_some_and(&joins) && !after.is_some_and(&joins)
}

/// A number that is not part of a longer one: no letter or digit next to
/// it, and no digit behind a single separator (`1234 5678` inside a longer
/// run of groups) or a decimal point.
fn isolated_number(text: &str, r: &Range<usize>) -> bool {
    if !isolated(text, r, |c| c.is_alphanumeric() || c == '_') {
        return false;
    }
    let mut before = text[..r.start].chars().rev();
    let mut after = text[r.end..].chars();
    let sep = |c: Option<char>| matches!(c, Some(' ' | '-' | '.' | '/'));
    let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
    let (b1, b2) = (before.next(), before.next());
    let (a1, a2) = (after.next(), after.next());
    let joined = |s: Option<char>, d: Option<char>| sep(s) && digit(d);
    !joined(b1, b2) && !joined(a1, a2)
}

/// The Luhn (mod 10) check over the digits of `s`.
pub fn luhn_valid(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn masked(entity: PiiEntity, text: &str) -> String {
        let mut s = text.to_owned();
        PiiPatterns::new().unwrap().mask(entity, &mut s);
        s
    }

    #[test]
    fn emails() {
        let e = PiiEntity::EmailAddress;
        assert_eq!(
            masked(e, "mail john.doe+x@mail.example.co.uk now"),
            "mail <EMAIL_ADDRESS> now"
        );
        assert_eq!(
            masked(e, "a@b.io, c_d@e-f.org."),
            "<EMAIL_ADDRESS>, <EMAIL_ADDRESS>."
        );
        for clean in ["user@localhost", "@handle", "a@b", "version 1.2@3"] {
            assert_eq!(masked(e, clean), clean);
        }
    }

    #[test]
    fn luhn() {
        for good in ["4111111111111111", "5500 0000 0000 0004", "378282246310005"] {
            assert!(luhn_valid(good), "{good}");
        }
        for bad in ["4111111111111112", "1234567890123456", "411111111111"] {
            assert!(!luhn_valid(bad), "{bad}");
        }
    }

    #[test]
    fn cards_only_when_luhn_passes() {
        let c = PiiEntity::CreditCard;
        assert_eq!(
            masked(c, "card 4111 1111 1111 1111 exp 12/29"),
            "card <CREDIT_CARD> exp 12/29"
        );
        assert_eq!(masked(c, "amex 3782-822463-10005."), "amex <CREDIT_CARD>.");
        assert_eq!(masked(c, "4111111111111111"), "<CREDIT_CARD>");
        for clean in [
            "order 1234567890123456 shipped",
            "id 4111 1111 1111 1112",
            "short 4111 1111 1111",
            "x4111111111111111",
        ] {
            assert_eq!(masked(c, clean), clean, "{clean}");
        }
    }

    #[test]
    fn phones() {
        let p = PiiEntity::PhoneNumber;
        let cases = [
            ("call +44 20 7946 0958 today", "call <PHONE_NUMBER> today"),
            ("tel: +49 (30) 123456789", "tel: <PHONE_NUMBER>"),
            ("us (555) 123-4567.", "us <PHONE_NUMBER>."),
            ("us 555-123-4567", "us <PHONE_NUMBER>"),
            ("us 555.123.4567", "us <PHONE_NUMBER>"),
            ("+1 555 123 4567", "<PHONE_NUMBER>"),
            ("1-800-555-0199", "<PHONE_NUMBER>"),
        ];
        for (text, want) in cases {
            assert_eq!(masked(p, text), want, "{text}");
        }
        for clean in [
            "on 2024-01-15 at 12:30",
            "id 5551234567",
            "1234 5678 9012 3456",
            "v1.2.3",
            "pi 3.14159265",
            "+12",
        ] {
            assert_eq!(masked(p, clean), clean, "{clean}");
        }
    }

    #[test]
    fn ip_addresses() {
        let ip = PiiEntity::IpAddress;
        let cases = [
            (
                "from 192.168.1.20 to 10.0.0.1.",
                "from <IP_ADDRESS> to <IP_ADDRESS>.",
            ),
            ("v6 2001:db8::8a2e:370:7334 ok", "v6 <IP_ADDRESS> ok"),
            ("loopback ::1", "loopback <IP_ADDRESS>"),
            ("mapped ::ffff:192.0.2.128", "mapped <IP_ADDRESS>"),
            ("fe80::1ff:fe23:4567:890a", "<IP_ADDRESS>"),
        ];
        for (text, want) in cases {
            assert_eq!(masked(ip, text), want, "{text}");
        }
        for clean in [
            "version 1.2.3.4.5",
            "999.1.1.1",
            "at 12:30:45",
            "std::vector<int>",
            "a::b::c path Foo::bar",
            "ratio 3:2",
        ] {
            assert_eq!(masked(ip, clean), clean, "{clean}");
        }
    }

    #[test]
    fn entity_names_round_trip() {
        for e in PiiEntity::ALL {
            assert_eq!(PiiEntity::from_name(e.name()), Some(e));
        }
        assert_eq!(PiiEntity::from_name("PERSON"), None);
    }
}
