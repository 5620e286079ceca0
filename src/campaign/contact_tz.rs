//! The contact's own time zone(s), for the optional calling window in the contact's local
//! time (`CampaignSettings::contact_window`, e.g. 09:00–21:00), and that window's checks.
//!
//! Zones come from, in order: the contact's explicit `timezone` (an IANA name); for NANP
//! (+1) numbers, the area code (US, Canada and the Caribbean); otherwise the country of
//! the number (via `phonenumber`), refined by the area prefix where a country spans zones
//! and its numbers say where (Australia, Brazil, Spain, Portugal, Mexico). When the place
//! is uncertain the answer is every candidate zone, and the window is open only when it
//! is open in all of them (calling-hours rules protect the callee, so we are
//! conservative). Tables name every zone that serves an area code in the US and Canada;
//! abroad, zones of very small populations are left out (Easter Island, Galápagos,
//! Chatham, Fernando de Noronha). An unknown country gives no zone, and then the window
//! cannot be judged and does not hold a call back (business hours still apply).
//!
//! Pure functions, no clock.

use chrono_tz::Tz;

use super::hours::CompiledHours;
use super::model::{parse_hhmm, Contact, ContactWindow, Millis, ModelError};

/// The daily calling window, parsed once; evaluated in each candidate zone of a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledWindow {
    /// The window as a daily schedule; its own zone is unused (each contact's applies).
    daily: CompiledHours,
}

impl CompiledWindow {
    /// "HH:MM" start (inclusive) and end (exclusive, may be "24:00"); start before end.
    pub fn compile(window: &ContactWindow) -> Result<CompiledWindow, ModelError> {
        let field = "contact_window";
        let start = parse_hhmm(&window.start).ok_or_else(|| ModelError::Invalid {
            field,
            reason: format!("start {:?} is not HH:MM", window.start),
        })?;
        let end = parse_hhmm(&window.end).ok_or_else(|| ModelError::Invalid {
            field,
            reason: format!("end {:?} is not HH:MM", window.end),
        })?;
        if start >= end {
            return Err(ModelError::Invalid {
                field,
                reason: "start must be before end".into(),
            });
        }
        Ok(CompiledWindow {
            daily: CompiledHours::daily(Tz::UTC, start, end),
        })
    }

    /// Open in every zone at `now` (no zone: open).
    pub fn is_open(&self, zones: &[Tz], now: Millis) -> bool {
        zones.iter().all(|&tz| self.daily.is_open_in(tz, now))
    }

    /// The first instant `>= now` at which it is open in every zone; `None` if the zones'
    /// windows never meet (e.g. 09:00–12:00 in zones twelve hours apart).
    pub fn next_open(&self, zones: &[Tz], now: Millis) -> Option<Millis> {
        // Chase: move to each zone's next opening until one pass finds all open. Each move
        // goes to the earliest time that zone allows, so no common opening is skipped.
        let limit = now.checked_add(8 * 86_400_000)?;
        let mut at = now;
        for _ in 0..64 {
            let mut moved = false;
            for &tz in zones {
                let next = self.daily.next_open_in(tz, at)?;
                if next > at {
                    at = next;
                    moved = true;
                }
            }
            if !moved {
                return Some(at);
            }
            if at > limit {
                return None;
            }
        }
        None
    }
}

/// [`CompiledWindow::is_open`]: open only if open in every candidate zone.
pub fn window_open(window: &CompiledWindow, zones: &[Tz], now: Millis) -> bool {
    window.is_open(zones, now)
}

/// [`CompiledWindow::next_open`].
pub fn next_window_open(window: &CompiledWindow, zones: &[Tz], now: Millis) -> Option<Millis> {
    window.next_open(zones, now)
}

/// The contact's candidate zones: its explicit `timezone` when that is a valid IANA name,
/// else those of its number ([`zones_for_number`]).
pub fn zones_for_contact(contact: &Contact, default_country: &str) -> Vec<Tz> {
    if let Some(tz) = contact
        .timezone
        .as_deref()
        .and_then(|name| name.trim().parse::<Tz>().ok())
    {
        return vec![tz];
    }
    zones_for_number(&contact.phone, default_country)
}

/// Candidate zones of a phone number (E.164, or national with `default_country`, ISO
/// alpha-2). Empty when the number does not parse or its country is not in the tables.
pub fn zones_for_number(phone: &str, default_country: &str) -> Vec<Tz> {
    let country = default_country
        .trim()
        .to_ascii_uppercase()
        .parse::<phonenumber::country::Id>()
        .ok();
    let Ok(number) = phonenumber::parse(country, phone) else {
        return Vec::new();
    };
    let national = number.national().value().to_string();
    let names = if number.code().value() == 1 {
        let area = national.get(..3).and_then(|a| a.parse::<u16>().ok());
        match area.and_then(nanp_area) {
            Some(names) => names,
            None => match number.country().id().map(|id| id.as_ref().to_string()) {
                Some(id) if id == "CA" => CA_ALL,
                Some(id) if id != "US" => country_zones(&id, &national).unwrap_or(US_ALL),
                _ => US_ALL,
            },
        }
    } else {
        match number.country().id() {
            Some(id) => country_zones(id.as_ref(), &national).unwrap_or(&[]),
            None => &[],
        }
    };
    names
        .iter()
        .filter_map(|name| name.parse::<Tz>().ok())
        .collect()
}

type Zones = &'static [&'static str];

const ET: Zones = &["America/New_York"];
const DETROIT: Zones = &["America/Detroit"];
const INDIANA: Zones = &["America/Indiana/Indianapolis"];
const KY_ET: Zones = &["America/Kentucky/Louisville"];
const CT: Zones = &["America/Chicago"];
const MT: Zones = &["America/Denver"];
const AZ: Zones = &["America/Phoenix"];
const PT: Zones = &["America/Los_Angeles"];
const ET_CT: Zones = &["America/New_York", "America/Chicago"];
const IN_CT: Zones = &["America/Indiana/Indianapolis", "America/Chicago"];
const CT_MT: Zones = &["America/Chicago", "America/Denver"];
const MT_PT: Zones = &["America/Boise", "America/Los_Angeles"];
const US_ALL: Zones = &[
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
];
const CA_ALL: Zones = &[
    "America/St_Johns",
    "America/Halifax",
    "America/Toronto",
    "America/Winnipeg",
    "America/Regina",
    "America/Edmonton",
    "America/Vancouver",
];

/// NANP area code → zones (US states, Canadian provinces, Caribbean and Pacific members).
fn nanp_area(area: u16) -> Option<Zones> {
    Some(match area {
        // Eastern.
        201 | 202 | 203 | 207 | 212 | 215 | 216 | 220 | 223 | 227 | 229 | 234 | 239 | 240 | 252
        | 267 | 272 | 276 | 283 | 301 | 302 | 304 | 305 | 315 | 321 | 324 | 326 | 329 | 330
        | 332 | 336 | 339 | 347 | 351 | 352 | 363 | 380 | 386 | 401 | 404 | 407 | 410 | 412
        | 413 | 419 | 434 | 436 | 440 | 443 | 445 | 470 | 472 | 475 | 478 | 484 | 508 | 513
        | 516 | 518 | 540 | 551 | 561 | 567 | 570 | 571 | 582 | 585 | 603 | 607 | 609 | 610
        | 614 | 617 | 624 | 631 | 640 | 645 | 646 | 656 | 667 | 678 | 680 | 681 | 686 | 689
        | 703 | 704 | 706 | 716 | 717 | 718 | 724 | 727 | 728 | 732 | 740 | 743 | 754 | 757
        | 762 | 770 | 771 | 772 | 774 | 781 | 786 | 802 | 803 | 804 | 813 | 814 | 826 | 828
        | 835 | 838 | 839 | 843 | 845 | 848 | 854 | 856 | 857 | 860 | 862 | 863 | 864 | 865
        | 878 | 904 | 908 | 910 | 912 | 914 | 917 | 919 | 929 | 934 | 937 | 941 | 943 | 948
        | 954 | 959 | 973 | 978 | 980 | 984 => ET,
        // Michigan (Eastern), but the Upper Peninsula's Wisconsin border counties are Central.
        231 | 248 | 269 | 313 | 517 | 586 | 616 | 679 | 734 | 810 | 947 | 989 => DETROIT,
        906 => &["America/Detroit", "America/Menominee"],
        // Indiana: Eastern except the Chicago and Evansville corners.
        260 | 317 | 463 | 765 => INDIANA,
        219 | 574 | 812 | 930 => IN_CT,
        // Kentucky and Tennessee straddle Eastern and Central; Florida's panhandle too.
        502 | 859 => KY_ET,
        270 | 364 | 606 => ET_CT,
        423 => ET_CT,
        850 | 448 => ET_CT,
        // Central.
        205 | 210 | 214 | 217 | 218 | 224 | 225 | 228 | 235 | 251 | 254 | 256 | 262 | 274 | 281
        | 309 | 312 | 314 | 316 | 318 | 319 | 320 | 325 | 327 | 331 | 337 | 346 | 353 | 361
        | 402 | 405 | 409 | 414 | 417 | 430 | 447 | 457 | 464 | 469 | 479 | 501 | 504 | 507
        | 512 | 515 | 531 | 534 | 539 | 557 | 563 | 572 | 573 | 580 | 601 | 608 | 612 | 615
        | 618 | 629 | 630 | 636 | 641 | 651 | 659 | 660 | 662 | 682 | 708 | 712 | 713 | 715
        | 726 | 730 | 731 | 737 | 763 | 769 | 773 | 779 | 806 | 815 | 816 | 817 | 830 | 832
        | 847 | 861 | 870 | 872 | 901 | 903 | 913 | 918 | 920 | 924 | 931 | 936 | 938 | 940
        | 945 | 952 | 956 | 972 | 975 | 979 | 985 => CT,
        // Plains states split between Central and Mountain; West Texas (432) around the
        // Guadalupe Mountains keeps Mountain time.
        308 | 432 | 605 | 620 | 701 | 785 => CT_MT,
        // Alabama; Phenix City (334) keeps Eastern time with Columbus, Georgia.
        334 => &["America/Chicago", "America/New_York"],
        // Mountain.
        303 | 307 | 385 | 406 | 435 | 505 | 575 | 719 | 720 | 801 | 915 | 970 | 983 => MT,
        // Idaho (Mountain; the panhandle Pacific) and eastern Oregon (Pacific; Malheur
        // County Mountain).
        208 | 986 | 458 | 541 => MT_PT,
        // Arizona keeps standard time; the Navajo Nation (928) observes DST.
        480 | 520 | 602 | 623 => AZ,
        928 => &["America/Phoenix", "America/Denver"],
        // Pacific.
        206 | 209 | 213 | 253 | 279 | 310 | 323 | 341 | 350 | 360 | 408 | 415 | 424 | 425 | 442
        | 503 | 509 | 510 | 530 | 559 | 562 | 564 | 619 | 626 | 628 | 650 | 657 | 661 | 669
        | 702 | 707 | 714 | 725 | 738 | 747 | 760 | 805 | 818 | 820 | 831 | 840 | 858 | 909
        | 916 | 925 | 949 | 951 | 971 => PT,
        // Nevada outside Las Vegas; West Wendover keeps Mountain time.
        775 => &["America/Los_Angeles", "America/Denver"],
        907 => &["America/Anchorage", "America/Adak"],
        808 => &["Pacific/Honolulu"],
        // Canada.
        709 | 879 => &["America/St_Johns", "America/Goose_Bay"],
        782 | 902 => &["America/Halifax"],
        428 | 506 => &["America/Moncton"],
        226 | 249 | 263 | 289 | 343 | 354 | 365 | 382 | 416 | 437 | 438 | 450 | 468 | 514 | 519
        | 548 | 579 | 613 | 647 | 683 | 705 | 742 | 753 | 819 | 873 | 905 => &["America/Toronto"],
        // Eastern Quebec: the Magdalen Islands and the Lower North Shore keep Atlantic time.
        367 | 418 | 581 => &["America/Toronto", "America/Halifax", "America/Blanc-Sablon"],
        807 => &["America/Toronto", "America/Winnipeg"],
        204 | 431 | 584 => &["America/Winnipeg"],
        // Saskatchewan keeps CST; Lloydminster follows Alberta.
        306 | 474 | 639 => &["America/Regina", "America/Edmonton"],
        368 | 403 | 587 | 780 | 825 => &["America/Edmonton"],
        604 => &["America/Vancouver"],
        // The rest of British Columbia: Pacific, and Mountain in the Rockies and Peace River.
        236 | 250 | 257 | 672 | 778 => &[
            "America/Vancouver",
            "America/Edmonton",
            "America/Dawson_Creek",
        ],
        867 => &[
            "America/Whitehorse",
            "America/Edmonton",
            "America/Cambridge_Bay",
            "America/Rankin_Inlet",
            "America/Iqaluit",
        ],
        // US territories and Caribbean members.
        787 | 939 => &["America/Puerto_Rico"],
        340 => &["America/St_Thomas"],
        670 => &["Pacific/Saipan"],
        671 => &["Pacific/Guam"],
        684 => &["Pacific/Pago_Pago"],
        242 => &["America/Nassau"],
        246 => &["America/Barbados"],
        264 => &["America/Anguilla"],
        268 => &["America/Antigua"],
        284 => &["America/Tortola"],
        345 => &["America/Cayman"],
        441 => &["Atlantic/Bermuda"],
        473 => &["America/Grenada"],
        649 => &["America/Grand_Turk"],
        658 | 876 => &["America/Jamaica"],
        664 => &["America/Montserrat"],
        721 => &["America/Lower_Princes"],
        758 => &["America/St_Lucia"],
        767 => &["America/Dominica"],
        784 => &["America/St_Vincent"],
        809 | 829 | 849 => &["America/Santo_Domingo"],
        868 => &["America/Port_of_Spain"],
        869 => &["America/St_Kitts"],
        _ => return None,
    })
}

/// Country (ISO alpha-2, as `phonenumber` names it) → zones; `national` (the national
/// significant number) refines countries that span zones.
fn country_zones(id: &str, national: &str) -> Option<Zones> {
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| national.starts_with(p));
    Some(match id {
        // Europe.
        "AD" => &["Europe/Andorra"],
        "AL" => &["Europe/Tirane"],
        "AM" => &["Asia/Yerevan"],
        "AT" => &["Europe/Vienna"],
        "AX" => &["Europe/Mariehamn"],
        "AZ" => &["Asia/Baku"],
        "BA" => &["Europe/Sarajevo"],
        "BE" => &["Europe/Brussels"],
        "BG" => &["Europe/Sofia"],
        "BY" => &["Europe/Minsk"],
        "CH" => &["Europe/Zurich"],
        "CY" => &["Asia/Nicosia"],
        "CZ" => &["Europe/Prague"],
        "DE" => &["Europe/Berlin"],
        "DK" => &["Europe/Copenhagen"],
        "EE" => &["Europe/Tallinn"],
        "ES" => {
            // Canary Islands: fixed lines 822/828/922/928; other 8xx/9xx are mainland.
            if starts(&["822", "828", "922", "928"]) {
                &["Atlantic/Canary"]
            } else if starts(&["8", "9"]) {
                &["Europe/Madrid"]
            } else {
                &["Europe/Madrid", "Atlantic/Canary"]
            }
        }
        "FI" => &["Europe/Helsinki"],
        "FO" => &["Atlantic/Faroe"],
        "FR" => &["Europe/Paris"],
        "GB" => &["Europe/London"],
        "GE" => &["Asia/Tbilisi"],
        "GG" => &["Europe/Guernsey"],
        "GI" => &["Europe/Gibraltar"],
        "GR" => &["Europe/Athens"],
        "HR" => &["Europe/Zagreb"],
        "HU" => &["Europe/Budapest"],
        "IE" => &["Europe/Dublin"],
        "IM" => &["Europe/Isle_of_Man"],
        "IS" => &["Atlantic/Reykjavik"],
        "IT" => &["Europe/Rome"],
        "JE" => &["Europe/Jersey"],
        "LI" => &["Europe/Vaduz"],
        "LT" => &["Europe/Vilnius"],
        "LU" => &["Europe/Luxembourg"],
        "LV" => &["Europe/Riga"],
        "MC" => &["Europe/Monaco"],
        "MD" => &["Europe/Chisinau"],
        "ME" => &["Europe/Podgorica"],
        "MK" => &["Europe/Skopje"],
        "MT" => &["Europe/Malta"],
        "NL" => &["Europe/Amsterdam"],
        "NO" | "SJ" => &["Europe/Oslo"],
        "PL" => &["Europe/Warsaw"],
        "PT" => {
            // Azores: fixed lines 292/295/296; other 2xx are mainland and Madeira (same time).
            if starts(&["292", "295", "296"]) {
                &["Atlantic/Azores"]
            } else if starts(&["2"]) {
                &["Europe/Lisbon"]
            } else {
                &["Europe/Lisbon", "Atlantic/Azores"]
            }
        }
        "RO" => &["Europe/Bucharest"],
        "RS" | "XK" => &["Europe/Belgrade"],
        "RU" => &[
            "Europe/Kaliningrad",
            "Europe/Moscow",
            "Europe/Samara",
            "Asia/Yekaterinburg",
            "Asia/Omsk",
            "Asia/Krasnoyarsk",
            "Asia/Irkutsk",
            "Asia/Yakutsk",
            "Asia/Vladivostok",
            "Asia/Magadan",
            "Asia/Kamchatka",
        ],
        "SE" => &["Europe/Stockholm"],
        "SI" => &["Europe/Ljubljana"],
        "SK" => &["Europe/Bratislava"],
        "SM" => &["Europe/San_Marino"],
        "TR" => &["Europe/Istanbul"],
        "UA" => &["Europe/Kyiv"],
        "VA" => &["Europe/Vatican"],
        // The Americas (NANP members are handled by area code).
        "AR" => &["America/Argentina/Buenos_Aires"],
        "AW" => &["America/Aruba"],
        "BO" => &["America/La_Paz"],
        "BQ" => &["America/Kralendijk"],
        "BR" => brazil(national),
        "BZ" => &["America/Belize"],
        "CL" => &["America/Santiago", "America/Punta_Arenas"],
        "CO" => &["America/Bogota"],
        "CR" => &["America/Costa_Rica"],
        "CU" => &["America/Havana"],
        "CW" => &["America/Curacao"],
        "EC" => &["America/Guayaquil"],
        "FK" => &["Atlantic/Stanley"],
        "GF" => &["America/Cayenne"],
        "GL" => &["America/Nuuk"],
        "GP" | "BL" | "MF" => &["America/Guadeloupe"],
        "GT" => &["America/Guatemala"],
        "GY" => &["America/Guyana"],
        "HN" => &["America/Tegucigalpa"],
        "HT" => &["America/Port-au-Prince"],
        "MQ" => &["America/Martinique"],
        "MX" => mexico(national),
        "NI" => &["America/Managua"],
        "PA" => &["America/Panama"],
        "PE" => &["America/Lima"],
        "PM" => &["America/Miquelon"],
        "PY" => &["America/Asuncion"],
        "SR" => &["America/Paramaribo"],
        "SV" => &["America/El_Salvador"],
        "UY" => &["America/Montevideo"],
        "VE" => &["America/Caracas"],
        // Asia and the Middle East.
        "AE" => &["Asia/Dubai"],
        "AF" => &["Asia/Kabul"],
        "BD" => &["Asia/Dhaka"],
        "BH" => &["Asia/Bahrain"],
        "BN" => &["Asia/Brunei"],
        "BT" => &["Asia/Thimphu"],
        "CN" => &["Asia/Shanghai"],
        "HK" => &["Asia/Hong_Kong"],
        "ID" => &["Asia/Jakarta", "Asia/Makassar", "Asia/Jayapura"],
        "IL" => &["Asia/Jerusalem"],
        "IN" => &["Asia/Kolkata"],
        "IQ" => &["Asia/Baghdad"],
        "IR" => &["Asia/Tehran"],
        "JO" => &["Asia/Amman"],
        "JP" => &["Asia/Tokyo"],
        "KG" => &["Asia/Bishkek"],
        "KH" => &["Asia/Phnom_Penh"],
        "KP" => &["Asia/Pyongyang"],
        "KR" => &["Asia/Seoul"],
        "KW" => &["Asia/Kuwait"],
        // One zone (UTC+5) since March 2024.
        "KZ" => &["Asia/Almaty"],
        "LA" => &["Asia/Vientiane"],
        "LB" => &["Asia/Beirut"],
        "LK" => &["Asia/Colombo"],
        "MM" => &["Asia/Yangon"],
        "MN" => &["Asia/Ulaanbaatar", "Asia/Hovd"],
        "MO" => &["Asia/Macau"],
        "MV" => &["Indian/Maldives"],
        "MY" => &["Asia/Kuala_Lumpur"],
        "NP" => &["Asia/Kathmandu"],
        "OM" => &["Asia/Muscat"],
        "PH" => &["Asia/Manila"],
        "PK" => &["Asia/Karachi"],
        "PS" => &["Asia/Hebron", "Asia/Gaza"],
        "QA" => &["Asia/Qatar"],
        "SA" => &["Asia/Riyadh"],
        "SG" => &["Asia/Singapore"],
        "SY" => &["Asia/Damascus"],
        "TH" => &["Asia/Bangkok"],
        "TJ" => &["Asia/Dushanbe"],
        "TL" => &["Asia/Dili"],
        "TM" => &["Asia/Ashgabat"],
        "TW" => &["Asia/Taipei"],
        "UZ" => &["Asia/Tashkent"],
        "VN" => &["Asia/Ho_Chi_Minh"],
        "YE" => &["Asia/Aden"],
        // Oceania.
        "AU" => australia(national),
        "FJ" => &["Pacific/Fiji"],
        "NC" => &["Pacific/Noumea"],
        "NZ" => &["Pacific/Auckland"],
        "PG" => &["Pacific/Port_Moresby"],
        "SB" => &["Pacific/Guadalcanal"],
        "TO" => &["Pacific/Tongatapu"],
        "VU" => &["Pacific/Efate"],
        "WS" => &["Pacific/Apia"],
        // Africa.
        "AO" => &["Africa/Luanda"],
        "BW" => &["Africa/Gaborone"],
        "CD" => &["Africa/Kinshasa", "Africa/Lubumbashi"],
        "CI" => &["Africa/Abidjan"],
        "CM" => &["Africa/Douala"],
        "DZ" => &["Africa/Algiers"],
        "EG" => &["Africa/Cairo"],
        "ET" => &["Africa/Addis_Ababa"],
        "GH" => &["Africa/Accra"],
        "KE" => &["Africa/Nairobi"],
        "LY" => &["Africa/Tripoli"],
        "MA" => &["Africa/Casablanca"],
        "MU" => &["Indian/Mauritius"],
        "MZ" => &["Africa/Maputo"],
        "NA" => &["Africa/Windhoek"],
        "NG" => &["Africa/Lagos"],
        "RE" => &["Indian/Reunion"],
        "RW" => &["Africa/Kigali"],
        "SD" => &["Africa/Khartoum"],
        "SN" => &["Africa/Dakar"],
        "TN" => &["Africa/Tunis"],
        "TZ" => &["Africa/Dar_es_Salaam"],
        "UG" => &["Africa/Kampala"],
        "ZA" => &["Africa/Johannesburg"],
        "ZM" => &["Africa/Lusaka"],
        "ZW" => &["Africa/Harare"],
        _ => return None,
    })
}

/// Australia: geographic numbers start with their state's area digit; mobiles (4) and
/// national numbers (1300…) can be anywhere.
fn australia(national: &str) -> Zones {
    match national.as_bytes().first() {
        Some(b'2') => &["Australia/Sydney"],
        Some(b'3') => &["Australia/Melbourne", "Australia/Hobart"],
        Some(b'7') => &["Australia/Brisbane"],
        Some(b'8') => &["Australia/Adelaide", "Australia/Darwin", "Australia/Perth"],
        _ => &[
            "Australia/Sydney",
            "Australia/Melbourne",
            "Australia/Brisbane",
            "Australia/Adelaide",
            "Australia/Darwin",
            "Australia/Perth",
        ],
    }
}

/// Brazil: every number, mobiles included, starts with its two-digit DDD.
fn brazil(national: &str) -> Zones {
    const BRASILIA: Zones = &["America/Sao_Paulo"];
    match national.get(..2).and_then(|ddd| ddd.parse::<u8>().ok()) {
        Some(65 | 66) => &["America/Cuiaba"],
        Some(67) => &["America/Campo_Grande"],
        Some(68) => &["America/Rio_Branco"],
        Some(69) => &["America/Porto_Velho"],
        Some(92 | 97) => &["America/Manaus"],
        Some(95) => &["America/Boa_Vista"],
        Some(11..=64 | 71..=91 | 93 | 94 | 96 | 98 | 99) => BRASILIA,
        _ => &["America/Sao_Paulo", "America/Manaus", "America/Rio_Branco"],
    }
}

/// Mexico: the big cities and the zones that differ from Central time by area code; the
/// rest could be anywhere.
fn mexico(national: &str) -> Zones {
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| national.starts_with(p));
    if starts(&["55", "56", "33"]) {
        &["America/Mexico_City"]
    } else if starts(&["81"]) {
        &["America/Monterrey"]
    } else if starts(&["664", "665", "686", "646", "661", "615", "616", "658"]) {
        &["America/Tijuana"]
    } else if starts(&["998", "983", "984", "987"]) {
        &["America/Cancun"]
    } else if starts(&["662"]) {
        &["America/Hermosillo"]
    } else if starts(&["656"]) {
        &["America/Ciudad_Juarez"]
    } else {
        &[
            "America/Cancun",
            "America/Mexico_City",
            "America/Chihuahua",
            "America/Mazatlan",
            "America/Hermosillo",
            "America/Tijuana",
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn local(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Millis {
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .earliest()
            .expect("local time exists")
            .timestamp_millis()
    }

    fn window(start: &str, end: &str) -> CompiledWindow {
        CompiledWindow::compile(&ContactWindow {
            start: start.into(),
            end: end.into(),
        })
        .expect("valid window")
    }

    fn names(zones: &[Tz]) -> Vec<&'static str> {
        zones.iter().map(|tz| tz.name()).collect()
    }

    #[test]
    fn every_zone_in_the_tables_exists() {
        let mut checked = 0;
        for area in 200..1000 {
            for name in nanp_area(area).unwrap_or(&[]) {
                assert!(name.parse::<Tz>().is_ok(), "area {area}: {name}");
                checked += 1;
            }
        }
        for a in b'A'..=b'Z' {
            for b in b'A'..=b'Z' {
                let id = String::from_utf8(vec![a, b]).expect("ascii");
                for national in [
                    "", "2", "3", "7", "8", "4", "11", "656", "65", "928", "292", "6",
                ] {
                    for name in country_zones(&id, national).unwrap_or(&[]) {
                        assert!(name.parse::<Tz>().is_ok(), "{id}: {name}");
                        checked += 1;
                    }
                }
            }
        }
        for list in [US_ALL, CA_ALL] {
            for name in list {
                assert!(name.parse::<Tz>().is_ok(), "{name}");
            }
        }
        assert!(checked > 1000);
    }

    #[test]
    fn numbers_map_to_their_zones() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("+12127365000", "US", &["America/New_York"]),
            ("+12135551234", "US", &["America/Los_Angeles"]),
            ("+13105550123", "US", &["America/Los_Angeles"]),
            ("+13125550123", "US", &["America/Chicago"]),
            ("+16025550123", "US", &["America/Phoenix"]),
            ("+14165550123", "US", &["America/Toronto"]),
            ("+16045550123", "US", &["America/Vancouver"]),
            (
                "+18505550123",
                "US",
                &["America/New_York", "America/Chicago"],
            ),
            ("+17875550123", "US", &["America/Puerto_Rico"]),
            ("(212) 736-5000", "US", &["America/New_York"]),
            ("+442079460000", "US", &["Europe/London"]),
            ("+493012345678", "US", &["Europe/Berlin"]),
            ("030 12345678", "DE", &["Europe/Berlin"]),
            ("+33142685300", "US", &["Europe/Paris"]),
            ("+81312345678", "US", &["Asia/Tokyo"]),
            ("+911123456789", "US", &["Asia/Kolkata"]),
            ("+861012345678", "US", &["Asia/Shanghai"]),
            ("+61212345678", "US", &["Australia/Sydney"]),
            (
                "+61892345678",
                "US",
                &["Australia/Adelaide", "Australia/Darwin", "Australia/Perth"],
            ),
            ("+6493001234", "US", &["Pacific/Auckland"]),
            ("+5511987654321", "US", &["America/Sao_Paulo"]),
            ("+5592987654321", "US", &["America/Manaus"]),
            ("+34928123456", "US", &["Atlantic/Canary"]),
            ("+34912345678", "US", &["Europe/Madrid"]),
            ("+34612345678", "US", &["Europe/Madrid", "Atlantic/Canary"]),
        ];
        for (phone, country, want) in cases {
            assert_eq!(&names(&zones_for_number(phone, country)), want, "{phone}");
        }
        assert_eq!(zones_for_number("+79161234567", "US").len(), 11);
        assert!(zones_for_number("not a number", "US").is_empty());
        assert!(zones_for_number("", "").is_empty());
        // A toll-free number could ring anywhere in the US.
        assert_eq!(zones_for_number("+18005550123", "US").len(), US_ALL.len());
    }

    #[test]
    fn an_explicit_zone_wins_and_a_bad_one_is_ignored() {
        let mut contact = Contact {
            id: 1,
            campaign_id: 1,
            phone: "+12127365000".into(),
            name: String::new(),
            comments: String::new(),
            tags: vec![],
            timezone: Some("Europe/Berlin".into()),
            status: crate::campaign::model::ContactStatus::Pending,
            attempts: 0,
            retries: 0,
            next_attempt_at: None,
            last_attempt_at: None,
            last_outcome: None,
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(names(&zones_for_contact(&contact, "US")), ["Europe/Berlin"]);
        contact.timezone = Some("Nowhere/Special".into());
        assert_eq!(
            names(&zones_for_contact(&contact, "US")),
            ["America/New_York"]
        );
    }

    #[test]
    fn new_york_and_los_angeles_numbers_wait_for_nine_local() {
        let w = window("09:00", "21:00");
        for (phone, tz) in [
            ("+12127365000", Tz::America__New_York),
            ("+12135551234", Tz::America__Los_Angeles),
            ("+13105550123", Tz::America__Los_Angeles),
        ] {
            let zones = zones_for_number(phone, "US");
            let eight = local(tz, 2026, 6, 10, 8, 0);
            let nine = local(tz, 2026, 6, 10, 9, 0);
            assert!(!window_open(&w, &zones, eight), "{phone} at 08:00");
            assert!(window_open(&w, &zones, nine), "{phone} at 09:00");
            assert!(window_open(&w, &zones, local(tz, 2026, 6, 10, 20, 59)));
            assert!(!window_open(&w, &zones, local(tz, 2026, 6, 10, 21, 0)));
            assert_eq!(next_window_open(&w, &zones, eight), Some(nine));
        }
    }

    #[test]
    fn several_zones_must_all_be_open() {
        let w = window("09:00", "21:00");
        let ny = Tz::America__New_York;
        // The Florida panhandle: Eastern and Central, so 09:00 Central = 10:00 Eastern.
        let zones = zones_for_number("+18505550123", "US");
        assert!(!window_open(&w, &zones, local(ny, 2026, 6, 10, 9, 30)));
        assert!(window_open(&w, &zones, local(ny, 2026, 6, 10, 10, 0)));
        assert!(window_open(&w, &zones, local(ny, 2026, 6, 10, 20, 59)));
        assert!(!window_open(&w, &zones, local(ny, 2026, 6, 10, 21, 0)));
        assert_eq!(
            next_window_open(&w, &zones, local(ny, 2026, 6, 10, 6, 0)),
            Some(local(ny, 2026, 6, 10, 10, 0))
        );
        // Windows that never meet.
        let short = window("09:00", "10:00");
        let far = [Tz::America__New_York, Tz::Asia__Tokyo];
        assert_eq!(
            next_window_open(&short, &far, local(ny, 2026, 6, 10, 0, 0)),
            None
        );
        // No zone known: the window does not hold the call.
        assert!(window_open(&w, &[], local(ny, 2026, 6, 10, 3, 0)));
    }

    #[test]
    fn bad_windows_are_refused() {
        for (start, end) in [("21:00", "09:00"), ("9", "10:00"), ("09:00", "09:00")] {
            let err = CompiledWindow::compile(&ContactWindow {
                start: start.into(),
                end: end.into(),
            })
            .unwrap_err();
            assert!(err.to_string().starts_with("contact_window"), "{err}");
        }
    }
}
