//! Phone numbers to E.164 (`+` and digits) with libphonenumber's metadata, fast enough for
//! a million-row import.
//!
//! Why not `phonenumber::parse` + `is_valid` alone: every pattern match in that crate goes
//! through one global LRU of compiled regexes behind a mutex (100 entries; one country's
//! patterns can overflow it), measured at 15–60 µs a number in release, i.e. up to a minute
//! for a million rows. With a default country it also reads a `+` number against the
//! default country's national prefix (`+86 138 0013 8000` with US → `+863800138000`).
//! So we take the same metadata, compile each pattern once into our own `regex::Regex`, and
//! apply the crate's validity rule (general pattern plus one number type, the region found by
//! leading digits) ourselves: about a microsecond a number. `phonenumber::parse` stays the
//! parser for national forms in the few countries whose national-prefix rule rewrites digits
//! (AR, BR, …) and for what the fast path rejects.
//!
//! Accepted text: optional leading `'` (a spreadsheet's text marker), optional leading `+`,
//! digits, and the separators ` - . ( ) /`; an international prefix typed instead of `+`
//! (`011` in the US, `00` in most countries) also works. Letters (extensions, `tel:`) are
//! refused: a dialer cannot dial them. Pure functions: no I/O, never panics.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use phonenumber::country::Id;
use phonenumber::metadata::{Descriptor, Metadata, DATABASE};
use regex::{Regex, RegexBuilder};

/// Longer text is not a phone number (bytes, after trimming).
const MAX_TEXT_BYTES: usize = 64;
/// Digits beyond this cannot be a phone number, international prefix included.
const MAX_DIGITS: usize = 20;

/// One number-type pattern of a region: matches at the start of the national number and the
/// length is one of `lengths` (any length when empty), as libphonenumber's `Descriptor`.
struct Pattern {
    re: Regex,
    lengths: Vec<u16>,
}

impl Pattern {
    fn new(desc: &Descriptor) -> Option<Pattern> {
        Some(Pattern {
            re: compile(desc.national_number().as_str())?,
            lengths: desc.possible_length().to_vec(),
        })
    }

    fn matches(&self, national: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(national.len() as u16)))
            && self.re.is_match(national)
    }
}

/// The metadata's patterns are written in verbose mode and match from the start.
fn compile(pattern: &str) -> Option<Regex> {
    RegexBuilder::new(&format!("^(?:{pattern})"))
        .ignore_whitespace(true)
        .build()
        .ok()
}

/// One region (country, or a non-geographic "001" entity) of a country calling code.
struct Region {
    id: String,
    national_prefix: Option<String>,
    /// Its national-prefix rule rewrites digits (a transform rule): parse national forms
    /// with `phonenumber` itself.
    rewrites_prefix: bool,
    international_prefix: Option<Regex>,
    leading_digits: Option<Regex>,
    general: Option<Pattern>,
    /// Every number type (fixed line, mobile, toll free, …): valid = any of them matches.
    types: Vec<Pattern>,
    /// Shortest and longest national number of any type, for error messages.
    min_len: usize,
    max_len: usize,
}

impl Region {
    fn new(meta: &Metadata) -> Region {
        let d = meta.descriptors();
        let types: Vec<Pattern> = [
            d.premium_rate(),
            d.toll_free(),
            d.shared_cost(),
            d.voip(),
            d.personal_number(),
            d.pager(),
            d.uan(),
            d.voicemail(),
            d.fixed_line(),
            d.mobile(),
        ]
        .into_iter()
        .flatten()
        .filter_map(Pattern::new)
        .collect();
        let lengths = types.iter().flat_map(|t| t.lengths.iter().copied());
        let min_len = lengths.clone().min().unwrap_or(0) as usize;
        let max_len = lengths.max().unwrap_or(17) as usize;
        Region {
            id: meta.id().to_string(),
            national_prefix: meta.national_prefix().map(str::to_string),
            rewrites_prefix: meta.national_prefix_transform_rule().is_some(),
            international_prefix: meta
                .international_prefix()
                .and_then(|r| compile(r.as_str())),
            leading_digits: meta.leading_digits().and_then(|r| compile(r.as_str())),
            general: Pattern::new(d.general()),
            types,
            min_len,
            max_len,
        }
    }

    /// libphonenumber's `number_type(..) != Unknown`.
    fn is_valid(&self, national: &str) -> bool {
        self.general.as_ref().is_some_and(|g| g.matches(national))
            && self.types.iter().any(|t| t.matches(national))
    }

    /// Why `national` (digits as typed) is not a number of this region.
    fn reject(&self, digits: &str) -> String {
        let n = digits.len();
        let name = if self.id == "001" {
            "non-geographic"
        } else {
            &self.id
        };
        if n < self.min_len {
            format!("is too short for a {name} number ({n} digits)")
        } else if n > self.max_len + 3 {
            format!("is too long for a {name} number ({n} digits)")
        } else {
            format!("is not a valid {name} number")
        }
    }
}

/// Every region sharing one country calling code (the NANP's `1` has two dozen).
struct CodeRules {
    code: u16,
    regions: Vec<Region>,
}

impl CodeRules {
    fn build(code: u16) -> Option<CodeRules> {
        let ids = DATABASE.region(&code)?;
        let regions: Vec<Region> = if ids.len() == 1 && ids[0] == "001" {
            vec![Region::new(DATABASE.by_code(&code)?.into_iter().next()?)]
        } else {
            ids.iter()
                .filter_map(|id| DATABASE.by_id(*id))
                .map(Region::new)
                .collect()
        };
        (!regions.is_empty()).then_some(CodeRules { code, regions })
    }

    /// libphonenumber's `is_valid`: the region is the only one of the code, or the first
    /// whose leading digits (or, without those, whose patterns) fit; then its patterns decide.
    fn is_valid(&self, national: &str) -> bool {
        let region = if self.regions.len() == 1 {
            &self.regions[0]
        } else {
            match self.regions.iter().find(|r| match &r.leading_digits {
                Some(leading) => leading.is_match(national),
                None => r.is_valid(national),
            }) {
                Some(region) => region,
                None => return false,
            }
        };
        region.is_valid(national)
    }

    fn e164(&self, national: &str) -> String {
        format!("+{}{national}", self.code)
    }

    /// A national number of this code, also written with a national prefix after the
    /// country code (`+44 (0)20 …`).
    fn national(&self, national: &str) -> Result<String, String> {
        if self.is_valid(national) {
            return Ok(self.e164(national));
        }
        for region in &self.regions {
            if let Some(rest) = region
                .national_prefix
                .as_deref()
                .and_then(|p| national.strip_prefix(p))
            {
                if self.is_valid(rest) {
                    return Ok(self.e164(rest));
                }
            }
        }
        Err(self.regions[0].reject(national))
    }
}

/// The compiled rules of a calling code, built on first use and kept for the process
/// (at most a thousand codes exist).
fn rules(code: u16) -> Option<Arc<CodeRules>> {
    static CACHE: OnceLock<RwLock<HashMap<u16, Option<Arc<CodeRules>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&code)
    {
        return hit.clone();
    }
    let built = CodeRules::build(code).map(Arc::new);
    cache
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(code)
        .or_insert(built)
        .clone()
}

/// Digits after `+`: the country code is the one known prefix of 1–3 digits (calling codes
/// are prefix-free), the rest is the national number.
fn international(digits: &str) -> Result<String, String> {
    for len in 1..=3.min(digits.len()) {
        let Ok(code) = digits[..len].parse::<u16>() else {
            continue;
        };
        if let Some(rules) = rules(code) {
            return rules.national(&digits[len..]);
        }
    }
    Err("does not start with a known country code".to_string())
}

/// Turns what people type into E.164, with a default country for numbers written without
/// one. Build it once per import; [`normalize_phone`] builds one per call.
#[derive(Clone)]
pub struct PhoneNormalizer {
    /// The default country's id, code rules and index of its region there.
    default: Option<(Id, Arc<CodeRules>, usize)>,
}

impl std::fmt::Debug for PhoneNormalizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let country = self.default.as_ref().map(|(id, ..)| id.as_ref());
        f.debug_struct("PhoneNormalizer")
            .field("default_country", &country)
            .finish()
    }
}

impl PhoneNormalizer {
    /// `default_country`: ISO 3166 alpha-2 (any case), or empty for none (then every number
    /// needs its `+country code`).
    pub fn new(default_country: &str) -> Result<PhoneNormalizer, String> {
        let wanted = default_country.trim().to_ascii_uppercase();
        if wanted.is_empty() {
            return Ok(PhoneNormalizer { default: None });
        }
        let unknown = || {
            format!("{default_country:?} is not a known country (an ISO 3166 two-letter code such as US)")
        };
        if wanted.len() != 2 || !wanted.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(unknown());
        }
        let id: Id = wanted.parse().map_err(|_| unknown())?;
        let meta = DATABASE.by_id(wanted.as_str()).ok_or_else(unknown)?;
        let rules = rules(meta.country_code()).ok_or_else(unknown)?;
        let index = rules
            .regions
            .iter()
            .position(|r| r.id == wanted)
            .ok_or_else(unknown)?;
        Ok(PhoneNormalizer {
            default: Some((id, rules, index)),
        })
    }

    /// The default country (upper case), if any.
    pub fn default_country(&self) -> Option<&str> {
        self.default.as_ref().map(|(id, ..)| id.as_ref())
    }

    /// E.164 for `text`, or why it is not a dialable number: a predicate that completes
    /// "the phone number …", e.g. "is too short for a US number (3 digits)".
    pub fn normalize(&self, text: &str) -> Result<String, String> {
        let text = text.trim();
        let text = text.strip_prefix('\'').unwrap_or(text).trim_start();
        if text.is_empty() {
            return Err("is empty".to_string());
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(format!(
                "is too long to be a phone number ({} characters)",
                text.chars().count()
            ));
        }
        let mut digits = [0u8; MAX_DIGITS];
        let mut count = 0;
        let mut plus = false;
        for c in text.chars() {
            match c {
                '0'..='9' => {
                    if count == MAX_DIGITS {
                        return Err(format!(
                            "is too long to be a phone number (more than {MAX_DIGITS} digits)"
                        ));
                    }
                    digits[count] = c as u8;
                    count += 1;
                }
                '+' if count == 0 && !plus => plus = true,
                '+' => return Err("has a + that is not at the start".to_string()),
                ' '
                | '-'
                | '.'
                | '('
                | ')'
                | '/'
                | '\u{a0}'
                | '\u{2007}'
                | '\u{202f}'
                | '\u{2010}'..='\u{2015}'
                | '\u{2212}'
                | '\u{3000}' => {}
                _ if looks_scientific(text) => {
                    return Err("is in scientific notation (like 1.2E+10): \
                         format the phone column as text in the spreadsheet and export again"
                        .to_string())
                }
                c if c.is_alphabetic() => {
                    return Err("contains letters; a dialable number has digits only \
                         (no extension)"
                        .to_string())
                }
                c => {
                    return Err(format!(
                        "contains {c:?}, which is not part of a phone number"
                    ))
                }
            }
        }
        if count == 0 {
            return Err("has no digits".to_string());
        }
        // Only ASCII digits were stored.
        let digits = std::str::from_utf8(&digits[..count]).unwrap_or_default();
        if plus {
            return international(digits);
        }
        let Some((id, rules, index)) = &self.default else {
            return Err(
                "has no country code: start it with + and the country code (no default country is set)"
                    .to_string(),
            );
        };
        let region = &rules.regions[*index];
        // An international prefix typed instead of `+` (011 in the US, 00 in the UK).
        if let Some(found) = region
            .international_prefix
            .as_ref()
            .and_then(|ip| ip.find(digits))
        {
            if found.end() > 0 && found.end() < digits.len() {
                if let Ok(e164) = international(&digits[found.end()..]) {
                    return Ok(e164);
                }
            }
        }
        if region.rewrites_prefix {
            if let Some(e164) = library(*id, text) {
                return Ok(e164);
            }
        }
        // As written; or with the country code but no `+`; or with the national prefix.
        if rules.is_valid(digits) {
            return Ok(rules.e164(digits));
        }
        let code = rules.code.to_string();
        let candidates = [
            digits.strip_prefix(code.as_str()),
            region
                .national_prefix
                .as_deref()
                .and_then(|p| digits.strip_prefix(p)),
        ];
        for national in candidates.into_iter().flatten() {
            if rules.is_valid(national) {
                return Ok(rules.e164(national));
            }
        }
        if !region.rewrites_prefix {
            if let Some(e164) = library(*id, text) {
                return Ok(e164);
            }
        }
        Err(region.reject(digits))
    }
}

/// `phonenumber`'s own parser (slow, thorough), validated with our rules.
fn library(id: Id, text: &str) -> Option<String> {
    let parsed = phonenumber::parse(Some(id), text).ok()?;
    if parsed.extension().is_some() {
        return None;
    }
    let national = parsed.national().to_string();
    let rules = rules(parsed.code().value())?;
    rules.is_valid(&national).then(|| rules.e164(&national))
}

/// `1.2025550101E+10`: what a spreadsheet makes of a long number in a general cell.
fn looks_scientific(text: &str) -> bool {
    let Some((mantissa, exponent)) = text.split_once(['E', 'e']) else {
        return false;
    };
    let exponent = exponent.strip_prefix('+').unwrap_or(exponent);
    !mantissa.is_empty()
        && mantissa
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b',')
        && !exponent.is_empty()
        && exponent.bytes().all(|b| b.is_ascii_digit())
}

/// E.164 for one number typed by a person (the API's single contacts and DNC entries):
/// `normalize_phone("(202) 555-0101", "US")` → `Ok("+12025550101")`. The error completes
/// "the phone number …" ("is not a valid US number"), so a caller writes e.g.
/// `format!("phone {text:?} {err}")`; an unknown default country is an error too (a whole
/// sentence then).
pub fn normalize_phone(text: &str, default_country: &str) -> Result<String, String> {
    PhoneNormalizer::new(default_country)?.normalize(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(text: &str) -> Result<String, String> {
        normalize_phone(text, "US")
    }

    #[test]
    fn the_briefs_examples() {
        assert_eq!(us("2025550101").as_deref(), Ok("+12025550101"));
        assert_eq!(us("12025550101").as_deref(), Ok("+12025550101"));
        assert_eq!(us("+44 20 7946 0958").as_deref(), Ok("+442079460958"));
        assert_eq!(us("(202) 555-0101").as_deref(), Ok("+12025550101"));
        assert_eq!(us("+1 202.555.0101").as_deref(), Ok("+12025550101"));
        assert_eq!(us("'+12025550101").as_deref(), Ok("+12025550101"));
        assert_eq!(us("011 44 20 7946 0958").as_deref(), Ok("+442079460958"));
    }

    #[test]
    fn default_country_variants() {
        let gb = |t| normalize_phone(t, "gb");
        assert_eq!(gb("020 7946 0958").as_deref(), Ok("+442079460958"));
        assert_eq!(gb("2079460958").as_deref(), Ok("+442079460958"));
        assert_eq!(gb("442079460958").as_deref(), Ok("+442079460958"));
        assert_eq!(gb("0044 20 7946 0958").as_deref(), Ok("+442079460958"));
        assert_eq!(gb("07400 123456").as_deref(), Ok("+447400123456"));
        assert_eq!(
            normalize_phone("030 901820", "DE").as_deref(),
            Ok("+4930901820")
        );
        assert_eq!(
            normalize_phone("06 12 34 56 78", "FR").as_deref(),
            Ok("+33612345678")
        );
        // Italy keeps its leading zero (no national prefix).
        assert_eq!(
            normalize_phone("02 1234 5678", "IT").as_deref(),
            Ok("+390212345678")
        );
        assert_eq!(
            normalize_phone("8 912 345 67 89", "RU").as_deref(),
            Ok("+79123456789")
        );
        // A Canadian number with the US default: same numbering plan.
        assert_eq!(us("416 555 0123").as_deref(), Ok("+14165550123"));
        // `+` numbers ignore the default country (phonenumber::parse with US gets these wrong).
        assert_eq!(us("+86 138 0013 8000").as_deref(), Ok("+8613800138000"));
        assert_eq!(us("+44 (0)20 7946 0958").as_deref(), Ok("+442079460958"));
        // No default: only `+` numbers.
        assert_eq!(
            normalize_phone("+12025550101", "").as_deref(),
            Ok("+12025550101")
        );
        assert!(normalize_phone("2025550101", "")
            .unwrap_err()
            .contains("no country code"));
        assert!(normalize_phone("2025550101", "XX")
            .unwrap_err()
            .contains("not a known country"));
        assert!(normalize_phone("2025550101", "USA").is_err());
    }

    #[test]
    fn bad_numbers_say_why() {
        assert_eq!(
            us("555").unwrap_err(),
            "is too short for a US number (3 digits)"
        );
        assert_eq!(us("1202555010").unwrap_err(), "is not a valid US number");
        assert_eq!(us("").unwrap_err(), "is empty");
        assert!(us("202-555-0101 x12").unwrap_err().contains("letters"));
        assert!(us("1.2025550101E+10").unwrap_err().contains("scientific"));
        assert!(us("+999 1234567").unwrap_err().contains("country code"));
        assert!(us("12+34").unwrap_err().contains("not at the start"));
        assert!(us("202#5550101").unwrap_err().contains("'#'"));
        assert!(us(&"1".repeat(30)).unwrap_err().contains("too long"));
        assert!(us(&"1 ".repeat(40)).unwrap_err().contains("too long"));
        assert_eq!(us("--").unwrap_err(), "has no digits");
    }

    /// Every region's example numbers (valid by definition of the metadata), written
    /// internationally and nationally, normalise to `+` code and example. Where
    /// `phonenumber::parse` disagrees it is its national-prefix quirk: it strips RU's `8`
    /// from `+7 800 …` (toll free), BY's and LT's likewise.
    #[test]
    fn every_regions_examples_normalise() {
        let mut checked = 0;
        let mut mismatches = Vec::new();
        for meta in DATABASE.iter() {
            let d = meta.descriptors();
            let examples = [d.fixed_line(), d.mobile(), d.toll_free()]
                .into_iter()
                .flatten()
                .filter_map(|desc| desc.example());
            for example in examples {
                let expected = format!("+{}{example}", meta.country_code());
                let ours = normalize_phone(&expected, "");
                if ours.as_ref() != Ok(&expected) {
                    mismatches.push(format!("{expected}: {ours:?}"));
                }
                if meta.id() != "001" {
                    if let Some(prefix) = meta.national_prefix() {
                        let national = format!("{prefix}{example}");
                        let ours = normalize_phone(&national, meta.id());
                        if ours.as_ref() != Ok(&expected) {
                            mismatches.push(format!("{} {national}: {ours:?}", meta.id()));
                        }
                    }
                }
                checked += 1;
            }
        }
        assert!(checked > 500, "{checked}");
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    }

    /// Where `phonenumber` gets it right, we agree with it (the `+` form of examples).
    #[test]
    fn agrees_with_phonenumber_where_it_parses_back() {
        for id in [
            "US", "GB", "DE", "FR", "IT", "ES", "IN", "AU", "BR", "MX", "CN", "JP", "ZA",
        ] {
            let meta = DATABASE.by_id(id).unwrap();
            for desc in [meta.descriptors().fixed_line(), meta.descriptors().mobile()] {
                let Some(example) = desc.and_then(|d| d.example()) else {
                    continue;
                };
                let text = format!("+{}{example}", meta.country_code());
                let theirs = phonenumber::parse(None, &text).unwrap();
                assert!(theirs.is_valid(), "{text}");
                let theirs = theirs.format().mode(phonenumber::Mode::E164).to_string();
                assert_eq!(normalize_phone(&text, id), Ok(theirs));
            }
        }
    }

    /// Random national numbers: our verdict equals `phonenumber::is_valid`.
    #[test]
    fn validity_matches_phonenumber_on_random_numbers() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for code in [1u16, 44, 49, 33, 39, 91, 61, 86, 7, 55, 54, 52, 81, 800] {
            let rules = rules(code).unwrap();
            for _ in 0..300 {
                let len = 6 + (next() % 7) as usize;
                let national: String = (0..len)
                    .map(|i| {
                        let lo = if i == 0 { 1 } else { 0 };
                        char::from(b'0' + (lo + next() % (10 - lo)) as u8)
                    })
                    .collect();
                let parsed = phonenumber::parse(None, format!("+{code}{national}"));
                let Ok(parsed) = parsed else { continue };
                if parsed.national().to_string() != national || parsed.code().value() != code {
                    continue;
                }
                assert_eq!(
                    rules.is_valid(&national),
                    parsed.is_valid(),
                    "+{code} {national}"
                );
            }
        }
    }
}
