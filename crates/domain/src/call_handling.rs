//! Call-handling settings of an account and its employees, and whether callers can be
//! recognised under them (formal conversation style and caller-ID transmission).

use crate::call_counts::{self, Measured};
use crate::phone::{self, E164, Region};
use crate::validation::{Violations, reference};
use chrono::{DateTime, Utc};

/// Bounds the employee list, which is read and written as a whole.
pub const MAX_EMPLOYEES: usize = 1_000;

/// Bounds the account's own lines.
pub const MAX_OWN_NUMBERS: usize = 100;

/// One of the account's own lines (switchboard, employees' extensions, the forwarding's line):
/// a call presenting it does not present the caller's number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnNumber {
    /// As entered, trimmed.
    pub number: String,
    pub e164: E164,
}

/// The time zone of an account that names none.
pub const DEFAULT_TIME_ZONE: &str = "Europe/Berlin";

/// An IANA time zone name (`Europe/Berlin`), in the database's spelling. The server stores and
/// returns instants; the zone tells clients what "end of Friday" means for the account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct TimeZone(String);

impl TimeZone {
    /// Any case; an unknown name is refused.
    pub fn parse(name: &str) -> Result<Self, String> {
        chrono_tz::Tz::from_str_insensitive(name.trim())
            .map(|tz| Self(tz.name().to_owned()))
            .map_err(|_| "must be an IANA time zone name, like Europe/Berlin".to_owned())
    }

    /// Trusted input, e.g. read back from the database.
    pub fn from_stored(name: String) -> Self {
        Self(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TimeZone {
    fn default() -> Self {
        Self(DEFAULT_TIME_ZONE.to_owned())
    }
}

/// Codes are those of the contract and the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConversationStyle {
    Formal = 1,
    Informal = 2,
}

impl ConversationStyle {
    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            1 => Some(Self::Formal),
            2 => Some(Self::Informal),
            _ => None,
        }
    }

    pub fn code(self) -> i32 {
        self as i32
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EmployeeOverride {
    pub employee_id: String,
    pub conversation_style: Option<ConversationStyle>,
    pub caller_id_transmission: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallHandling {
    pub account_id: String,
    /// `None`: not set, which counts as not formal.
    pub conversation_style: Option<ConversationStyle>,
    pub caller_id_transmission: bool,
    pub phone_region: Region,
    pub employees: Vec<EmployeeOverride>,
    #[serde(default)]
    pub time_zone: TimeZone,
    #[serde(default)]
    pub own_numbers: Vec<OwnNumber>,
    /// Call notes older than this many days (by call time) are deleted; `None` keeps them.
    #[serde(default)]
    pub call_note_retention_days: Option<u32>,
    pub version: i64,
    pub update_time: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingCode {
    ConversationStyleNotFormal = 1,
    CallerIdNotTransmitted = 2,
    SettingsUnknown = 3,
    /// Measured: too many calls arrived without a usable number.
    CallsWithoutNumber = 4,
    /// Measured: too many calls presented one of the account's own numbers.
    CallsFromOwnNumber = 5,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub code: FindingCode,
    /// Empty when the finding is about the account's own setting (or all its calls).
    pub employee_id: String,
    pub message: String,
    /// For measured findings: the share of calls, in [0, 1].
    pub share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecognitionStatus {
    pub ready: bool,
    pub findings: Vec<Finding>,
    /// What real calls showed, when counts were read.
    pub measured: Option<Measured>,
    /// What the measurement says in a sentence, for display.
    pub measured_note: String,
}

/// The declared settings' findings ([`declared`]) corrected by what real calls showed: a
/// measured problem is reported with its figures, and replaces the declared caller-ID finding;
/// calls whose numbers arrive overrule a declaration that they do not. With fewer than
/// [`call_counts::MIN_CALLS`] calls only the declaration speaks.
pub fn recognition(
    settings: Option<&CallHandling>,
    employee_id: &str,
    measured: Option<&Measured>,
) -> RecognitionStatus {
    let mut status = declared(settings, employee_id);
    let Some(m) = measured else {
        return status;
    };
    let c = &m.counts;
    let scope = if m.employee_id.is_empty() {
        "of the account".to_owned()
    } else {
        format!("for employee {}", m.employee_id)
    };
    let days = call_counts::WINDOW_DAYS;
    let pct = |share: f64| (share * 100.0).round() as i64;
    status.measured_note = if c.enough() {
        format!(
            "{} calls {scope} in the last {days} days: {} % without the caller's number, {} % \
             with an own number, {} % found a contact by number",
            c.calls,
            pct(c.without_number_share()),
            pct(c.own_number_share()),
            pct(if c.calls == 0 {
                0.0
            } else {
                c.number_found as f64 / c.calls as f64
            })
        )
    } else {
        format!(
            "only {} calls {scope} in the last {days} days: too few (fewer than {}) to tell \
             whether callers' numbers arrive",
            c.calls,
            call_counts::MIN_CALLS
        )
    };
    if c.enough() {
        let measures = [
            (
                FindingCode::CallsWithoutNumber,
                c.without_number_share(),
                call_counts::MAX_WITHOUT_NUMBER_SHARE,
                "arrived without the caller's number: switch on caller-ID transmission in the \
                 call forwarding",
            ),
            (
                FindingCode::CallsFromOwnNumber,
                c.own_number_share(),
                call_counts::MAX_OWN_NUMBER_SHARE,
                "presented your own number: the call forwarding passes its own number instead \
                 of the caller's",
            ),
        ];
        let measured_findings: Vec<Finding> = measures
            .into_iter()
            .filter(|(_, share, bound, _)| share > bound)
            .map(|(code, share, _, what)| Finding {
                code,
                employee_id: m.employee_id.clone(),
                message: format!(
                    "{} % of calls {scope} in the last {days} days {what}",
                    pct(share)
                ),
                share: Some(share),
            })
            .collect();
        // Measurement outranks the declaration about caller IDs, either way.
        status
            .findings
            .retain(|f| f.code != FindingCode::CallerIdNotTransmitted);
        status.findings.extend(measured_findings);
        status.ready = status.findings.is_empty();
    }
    status.measured = Some(m.clone());
    status
}

/// The effective settings for one employee (their override, else the account's) and what
/// keeps the secretarial service from finding callers under them, as declared.
fn declared(settings: Option<&CallHandling>, employee_id: &str) -> RecognitionStatus {
    let Some(s) = settings else {
        return RecognitionStatus {
            ready: false,
            findings: vec![Finding {
                code: FindingCode::SettingsUnknown,
                employee_id: String::new(),
                message: "no call-handling settings are stored for this account, so it is \
                          unknown whether callers can be recognised"
                    .into(),
                share: None,
            }],
            measured: None,
            measured_note: String::new(),
        };
    };
    let over = (!employee_id.is_empty())
        .then(|| s.employees.iter().find(|e| e.employee_id == employee_id))
        .flatten();
    let (style, style_by_employee) = match over.and_then(|e| e.conversation_style) {
        Some(st) => (Some(st), true),
        None => (s.conversation_style, false),
    };
    let (cid, cid_by_employee) = match over.and_then(|e| e.caller_id_transmission) {
        Some(v) => (v, true),
        None => (s.caller_id_transmission, false),
    };
    let who = |by_employee: bool| {
        if by_employee {
            employee_id.to_owned()
        } else {
            String::new()
        }
    };
    let mut findings = Vec::new();
    if style != Some(ConversationStyle::Formal) {
        findings.push(Finding {
            code: FindingCode::ConversationStyleNotFormal,
            employee_id: who(style_by_employee),
            message: format!(
                "the conversation style {} is not formal, so agents do not ask callers for \
                 their full name and may not find them by name",
                if style_by_employee {
                    "of this employee"
                } else {
                    "of the account"
                }
            ),
            share: None,
        });
    }
    if !cid {
        findings.push(Finding {
            code: FindingCode::CallerIdNotTransmitted,
            employee_id: who(cid_by_employee),
            message: format!(
                "caller-ID transmission is off in the call forwarding {}, so callers cannot \
                 be found by their number",
                if cid_by_employee {
                    "of this employee"
                } else {
                    "of the account"
                }
            ),
            share: None,
        });
    }
    RecognitionStatus {
        ready: findings.is_empty(),
        findings,
        measured: None,
        measured_note: String::new(),
    }
}

impl CallHandling {
    /// What an account has before its first update: nothing formal, no caller ID, the server's
    /// default region, no employee overrides. Version 0: not stored yet.
    pub fn initial(account_id: &str, region: Region, now: DateTime<Utc>) -> Self {
        Self {
            account_id: account_id.to_owned(),
            conversation_style: None,
            caller_id_transmission: false,
            phone_region: region,
            employees: Vec::new(),
            time_zone: TimeZone::default(),
            own_numbers: Vec::new(),
            call_note_retention_days: None,
            version: 0,
            update_time: now,
        }
    }

    pub fn etag(&self) -> String {
        crate::contact::etag(self.version)
    }

    /// Whether a call presenting `e164` presents one of the account's own lines.
    pub fn is_own_number(&self, e164: &str) -> bool {
        self.own_numbers.iter().any(|o| o.e164.as_str() == e164)
    }
}

/// The writable fields, as named in an update mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    ConversationStyle,
    CallerIdTransmission,
    PhoneRegion,
    Employees,
    TimeZone,
    OwnNumbers,
    CallNoteRetentionDays,
}

impl Field {
    /// What an empty mask writes: the fields the contract had before `time_zone`, so a client
    /// that does not know the zone never resets it.
    pub const ALL: [Field; 4] = [
        Field::ConversationStyle,
        Field::CallerIdTransmission,
        Field::PhoneRegion,
        Field::Employees,
    ];

    pub fn from_path(path: &str) -> Option<Self> {
        Some(match path {
            "conversation_style" => Self::ConversationStyle,
            "caller_id_transmission" => Self::CallerIdTransmission,
            "phone_region" => Self::PhoneRegion,
            "employees" => Self::Employees,
            "time_zone" => Self::TimeZone,
            "own_numbers" => Self::OwnNumbers,
            "call_note_retention_days" => Self::CallNoteRetentionDays,
            _ => return None,
        })
    }
}

/// An employee entry as a request carries it; style code 0 means "as the account".
#[derive(Debug, Clone, Default)]
pub struct RawEmployee {
    pub employee_id: String,
    pub conversation_style: i32,
    pub caller_id_transmission: Option<bool>,
}

/// The settings as a request carries them, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawCallHandling {
    pub conversation_style: i32,
    pub caller_id_transmission: bool,
    pub phone_region: String,
    pub employees: Vec<RawEmployee>,
    pub time_zone: String,
    pub own_numbers: Vec<String>,
    /// 0 is unset.
    pub call_note_retention_days: i32,
}

/// A validated, field-masked change. `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallHandlingPatch {
    /// `Some(None)` unsets the account's style (which counts as not formal).
    pub conversation_style: Option<Option<ConversationStyle>>,
    pub caller_id_transmission: Option<bool>,
    pub phone_region: Option<Region>,
    /// Replaces the whole list.
    pub employees: Option<Vec<EmployeeOverride>>,
    pub time_zone: Option<TimeZone>,
    /// As entered, with their request path; read in the region the settings have once the
    /// rest of the patch is applied ([`CallHandlingPatch::apply`]).
    pub own_numbers: Option<(Vec<String>, String)>,
    /// `Some(None)` keeps call notes for ever.
    pub call_note_retention_days: Option<Option<u32>>,
}

impl CallHandlingPatch {
    /// Validates the masked fields of `raw`; an empty `phone_region` is `default_region`.
    /// `prefix` is the request path of the settings.
    pub fn parse(
        raw: &RawCallHandling,
        mask: &[Field],
        default_region: &Region,
        prefix: &str,
    ) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let mut p = CallHandlingPatch::default();
        let path = |f: &str| format!("{prefix}.{f}");
        for field in mask {
            match field {
                Field::ConversationStyle => {
                    p.conversation_style = v.check(
                        &path("conversation_style"),
                        style_code(raw.conversation_style),
                    );
                }
                Field::CallerIdTransmission => {
                    p.caller_id_transmission = Some(raw.caller_id_transmission);
                }
                Field::PhoneRegion => {
                    let r = if raw.phone_region.trim().is_empty() {
                        Ok(*default_region)
                    } else {
                        Region::parse(&raw.phone_region).map_err(|_| {
                            "must be an ISO 3166-1 alpha-2 region with phone numbering, \
                             like DE"
                                .to_owned()
                        })
                    };
                    p.phone_region = v.check(&path("phone_region"), r);
                }
                Field::Employees => {
                    p.employees = v.absorb(employees(&raw.employees, &path("employees")));
                }
                Field::TimeZone => {
                    let r = match raw.time_zone.trim() {
                        "" => Ok(TimeZone::default()),
                        name => TimeZone::parse(name),
                    };
                    p.time_zone = v.check(&path("time_zone"), r);
                }
                Field::OwnNumbers => {
                    let field = path("own_numbers");
                    if raw.own_numbers.len() > MAX_OWN_NUMBERS {
                        v.add(
                            &field,
                            format!(
                                "must have at most {MAX_OWN_NUMBERS} entries, got {}",
                                raw.own_numbers.len()
                            ),
                        );
                    } else {
                        p.own_numbers = Some((raw.own_numbers.clone(), field));
                    }
                }
                Field::CallNoteRetentionDays => {
                    p.call_note_retention_days = v.check(
                        &path("call_note_retention_days"),
                        retention_days(raw.call_note_retention_days),
                    );
                }
            }
        }
        v.into_result(p)
    }

    /// Applies the patch; own numbers are read in the resulting region, and one that is no
    /// phone number there is refused.
    pub fn apply(&self, s: &mut CallHandling) -> Result<(), Violations> {
        if let Some(style) = self.conversation_style {
            s.conversation_style = style;
        }
        if let Some(cid) = self.caller_id_transmission {
            s.caller_id_transmission = cid;
        }
        if let Some(region) = self.phone_region {
            s.phone_region = region;
        }
        if let Some(list) = &self.employees {
            s.employees = list.clone();
        }
        if let Some(tz) = &self.time_zone {
            s.time_zone = tz.clone();
        }
        if let Some((raw, field)) = &self.own_numbers {
            s.own_numbers = own_numbers(raw, &s.phone_region, field)?;
        }
        if let Some(days) = self.call_note_retention_days {
            s.call_note_retention_days = days;
        }
        Ok(())
    }
}

/// The longest call-note retention that can be set: a hundred years.
pub const MAX_CALL_NOTE_RETENTION_DAYS: u32 = 36_500;

/// 0 is "kept"; otherwise 1 to [`MAX_CALL_NOTE_RETENTION_DAYS`].
fn retention_days(days: i32) -> Result<Option<u32>, String> {
    match u32::try_from(days) {
        Ok(0) => Ok(None),
        Ok(d) if d <= MAX_CALL_NOTE_RETENTION_DAYS => Ok(Some(d)),
        _ => Err(format!(
            "must be 0 (keep) or 1 to {MAX_CALL_NOTE_RETENTION_DAYS} days"
        )),
    }
}

fn own_numbers(raw: &[String], region: &Region, field: &str) -> Result<Vec<OwnNumber>, Violations> {
    let mut v = Violations::new();
    let mut out: Vec<OwnNumber> = Vec::with_capacity(raw.len());
    for (i, n) in raw.iter().enumerate() {
        match phone::normalize(n, region) {
            Ok(Some(e164)) if out.iter().any(|o| o.e164 == e164) => {
                v.add(
                    format!("{field}[{i}]"),
                    "appears more than once in the list",
                );
            }
            Ok(Some(e164)) => out.push(OwnNumber {
                number: n.trim().to_owned(),
                e164,
            }),
            Ok(None) => v.add(format!("{field}[{i}]"), "is required"),
            Err(e) => v.add(format!("{field}[{i}]"), e.to_string()),
        }
    }
    v.into_result(out)
}

/// 0 is "not set"; other codes must be known.
fn style_code(code: i32) -> Result<Option<ConversationStyle>, String> {
    match code {
        0 => Ok(None),
        c => ConversationStyle::from_code(c)
            .map(Some)
            .ok_or_else(|| "unknown conversation style".to_owned()),
    }
}

fn employees(raw: &[RawEmployee], field: &str) -> Result<Vec<EmployeeOverride>, Violations> {
    let mut v = Violations::new();
    if raw.len() > MAX_EMPLOYEES {
        v.add(
            field,
            format!(
                "must have at most {MAX_EMPLOYEES} entries, got {}",
                raw.len()
            ),
        );
        return Err(v);
    }
    let mut out: Vec<EmployeeOverride> = Vec::with_capacity(raw.len());
    for (i, e) in raw.iter().enumerate() {
        let id = v.check(
            &format!("{field}[{i}].employee_id"),
            reference(&e.employee_id, true),
        );
        if let Some(id) = &id
            && out.iter().any(|o| &o.employee_id == id)
        {
            v.add(
                format!("{field}[{i}].employee_id"),
                "appears more than once in the list",
            );
            continue;
        }
        let style = v.check(
            &format!("{field}[{i}].conversation_style"),
            style_code(e.conversation_style),
        );
        if let (Some(employee_id), Some(conversation_style)) = (id, style) {
            out.push(EmployeeOverride {
                employee_id,
                conversation_style,
                caller_id_transmission: e.caller_id_transmission,
            });
        }
    }
    v.into_result(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConversationStyle::*;
    use FindingCode::*;

    fn settings(
        style: ConversationStyle,
        cid: bool,
        emp: Option<EmployeeOverride>,
    ) -> CallHandling {
        CallHandling {
            account_id: "a".into(),
            conversation_style: Some(style),
            caller_id_transmission: cid,
            phone_region: Region::germany(),
            employees: emp.into_iter().collect(),
            time_zone: TimeZone::default(),
            own_numbers: Vec::new(),
            call_note_retention_days: None,
            version: 1,
            update_time: Utc::now(),
        }
    }

    #[test]
    fn time_zones_are_iana_names_in_any_case() {
        assert_eq!(
            TimeZone::parse("europe/berlin").unwrap().as_str(),
            "Europe/Berlin"
        );
        assert_eq!(
            TimeZone::parse("America/New_York").unwrap().as_str(),
            "America/New_York"
        );
        assert_eq!(TimeZone::parse("UTC").unwrap().as_str(), "UTC");
        for bad in ["", "Berlin", "Europe/Atlantis", "+01:00", "CET1"] {
            assert!(TimeZone::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let raw = RawCallHandling {
            time_zone: "Mars/Olympus".into(),
            ..Default::default()
        };
        let err = CallHandlingPatch::parse(&raw, &[Field::TimeZone], &Region::germany(), "c")
            .unwrap_err();
        assert_eq!(err.into_iter().next().unwrap().field, "c.time_zone");
        let raw = RawCallHandling::default();
        let p =
            CallHandlingPatch::parse(&raw, &[Field::TimeZone], &Region::germany(), "c").unwrap();
        assert_eq!(p.time_zone, Some(TimeZone::default()));
    }

    fn codes(s: &RecognitionStatus) -> Vec<(FindingCode, String)> {
        s.findings
            .iter()
            .map(|f| (f.code, f.employee_id.clone()))
            .collect()
    }

    #[test]
    fn no_settings_means_unknown() {
        let s = recognition(None, "e1", None);
        assert!(!s.ready);
        assert_eq!(codes(&s), vec![(SettingsUnknown, String::new())]);
    }

    #[test]
    fn every_combination_of_account_and_employee_settings() {
        let styles = [None, Some(Formal), Some(Informal)];
        let cids = [None, Some(true), Some(false)];
        for acc_style in [Formal, Informal] {
            for acc_cid in [true, false] {
                for emp_style in styles {
                    for emp_cid in cids {
                        let o = EmployeeOverride {
                            employee_id: "e1".into(),
                            conversation_style: emp_style,
                            caller_id_transmission: emp_cid,
                        };
                        let s = settings(acc_style, acc_cid, Some(o));
                        let eff_style = emp_style.unwrap_or(acc_style);
                        let eff_cid = emp_cid.unwrap_or(acc_cid);
                        let st = recognition(Some(&s), "e1", None);
                        let mut want = vec![];
                        if eff_style != Formal {
                            let who = if emp_style.is_some() { "e1" } else { "" };
                            want.push((ConversationStyleNotFormal, who.to_owned()));
                        }
                        if !eff_cid {
                            let who = if emp_cid.is_some() { "e1" } else { "" };
                            want.push((CallerIdNotTransmitted, who.to_owned()));
                        }
                        assert_eq!(codes(&st), want);
                        assert_eq!(st.ready, want.is_empty());
                        // another employee sees only the account's settings
                        let other = recognition(Some(&s), "e2", None);
                        assert_eq!(
                            other.ready,
                            acc_style == Formal && acc_cid,
                            "{acc_style:?} {acc_cid}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn an_account_style_not_set_counts_as_not_formal() {
        let mut s = settings(Formal, true, None);
        s.conversation_style = None;
        let st = recognition(Some(&s), "", None);
        assert!(!st.ready);
        assert_eq!(
            codes(&st),
            vec![(ConversationStyleNotFormal, String::new())]
        );
        let initial = CallHandling::initial("a", Region::germany(), Utc::now());
        assert_eq!(
            codes(&recognition(Some(&initial), "e1", None)),
            vec![
                (ConversationStyleNotFormal, String::new()),
                (CallerIdNotTransmitted, String::new())
            ]
        );
    }

    #[test]
    fn every_finding_says_whose_setting_it_is() {
        let mut s = settings(Informal, false, None);
        s.employees.push(EmployeeOverride {
            employee_id: "e1".into(),
            conversation_style: Some(Informal),
            caller_id_transmission: Some(false),
        });
        let mut all = recognition(Some(&s), "e1", None).findings;
        all.extend(recognition(Some(&s), "e2", None).findings);
        all.extend(recognition(None, "", None).findings);
        assert_eq!(all.len(), 5);
        for f in all {
            assert!(f.message.len() > 40, "{f:?}");
            assert!(!f.message.ends_with('.'), "{f:?}");
            let blames_employee = f.message.contains("of this employee");
            assert_eq!(blames_employee, !f.employee_id.is_empty(), "{f:?}");
        }
    }

    fn raw_employee(id: &str, style: i32, cid: Option<bool>) -> RawEmployee {
        RawEmployee {
            employee_id: id.into(),
            conversation_style: style,
            caller_id_transmission: cid,
        }
    }

    #[test]
    fn a_patch_validates_and_applies_only_masked_fields() {
        let raw = RawCallHandling {
            conversation_style: 1,
            caller_id_transmission: true,
            phone_region: " at ".into(),
            employees: vec![raw_employee("e1", 0, Some(false))],
            time_zone: String::new(),
            own_numbers: Vec::new(),
            call_note_retention_days: -1,
        };
        let de = Region::germany();
        let e = CallHandlingPatch::parse(&raw, &[Field::CallNoteRetentionDays], &de, "ch");
        assert_eq!(
            e.unwrap_err().iter().next().unwrap().field,
            "ch.call_note_retention_days"
        );
        let p = CallHandlingPatch::parse(&raw, &[Field::PhoneRegion], &de, "ch").unwrap();
        let mut s = CallHandling::initial("a", de, Utc::now());
        p.apply(&mut s).unwrap();
        assert_eq!(s.phone_region.as_str(), "AT");
        assert_eq!(s.conversation_style, None);
        assert!(s.employees.is_empty());

        let p = CallHandlingPatch::parse(&raw, &Field::ALL, &de, "ch").unwrap();
        p.apply(&mut s).unwrap();
        assert_eq!(s.conversation_style, Some(Formal));
        assert!(s.caller_id_transmission);
        assert_eq!(
            s.employees,
            vec![EmployeeOverride {
                employee_id: "e1".into(),
                conversation_style: None,
                caller_id_transmission: Some(false),
            }]
        );

        let empty_region = RawCallHandling::default();
        let p = CallHandlingPatch::parse(&empty_region, &[Field::PhoneRegion], &de, "ch").unwrap();
        assert_eq!(p.phone_region, Some(de));
    }

    #[test]
    fn each_bad_field_is_named() {
        let de = Region::germany();
        let cases: Vec<(RawCallHandling, &[&str])> = vec![
            (
                RawCallHandling {
                    conversation_style: 9,
                    ..Default::default()
                },
                &["ch.conversation_style"],
            ),
            (
                RawCallHandling {
                    phone_region: "XX".into(),
                    ..Default::default()
                },
                &["ch.phone_region"],
            ),
            (
                RawCallHandling {
                    employees: vec![
                        raw_employee("", 0, None),
                        raw_employee("e1", 7, None),
                        raw_employee("e2", 1, None),
                        raw_employee("e2", 2, None),
                    ],
                    ..Default::default()
                },
                &[
                    "ch.employees[0].employee_id",
                    "ch.employees[1].conversation_style",
                    "ch.employees[3].employee_id",
                ],
            ),
            (
                RawCallHandling {
                    employees: (0..=MAX_EMPLOYEES)
                        .map(|i| raw_employee(&format!("e{i}"), 0, None))
                        .collect(),
                    ..Default::default()
                },
                &["ch.employees"],
            ),
        ];
        for (raw, fields) in cases {
            let got = CallHandlingPatch::parse(&raw, &Field::ALL, &de, "ch").unwrap_err();
            let got: Vec<String> = got.into_iter().map(|v| v.field).collect();
            assert_eq!(got, *fields);
        }
    }

    fn measured(employee: &str, calls: i64, without: i64, own: i64) -> Measured {
        Measured {
            employee_id: employee.into(),
            counts: crate::call_counts::CallCounts {
                calls,
                without_number: without,
                own_number: own,
                number_found: calls - without - own,
            },
        }
    }

    #[test]
    fn measured_shares_give_findings_with_their_figures() {
        let s = settings(Formal, true, None);
        let st = recognition(Some(&s), "e1", Some(&measured("e1", 50, 29, 0)));
        assert_eq!(codes(&st), vec![(CallsWithoutNumber, "e1".to_owned())]);
        assert!(!st.ready);
        let f = &st.findings[0];
        assert!(
            f.message.starts_with("58 % of calls for employee e1"),
            "{}",
            f.message
        );
        assert_eq!(f.share, Some(0.58));

        let st = recognition(Some(&s), "", Some(&measured("", 100, 0, 31)));
        assert_eq!(codes(&st), vec![(CallsFromOwnNumber, String::new())]);
        assert!(
            st.findings[0]
                .message
                .contains("31 % of calls of the account")
        );

        let st = recognition(Some(&s), "", Some(&measured("", 100, 10, 2)));
        assert!(st.ready && st.findings.is_empty(), "healthy: {st:?}");
        assert!(st.measured_note.starts_with("100 calls of the account"));
    }

    #[test]
    fn measurement_outranks_the_declaration_and_too_few_calls_leave_it_alone() {
        // Declared off, but numbers arrive: no caller-ID finding.
        let off = settings(Formal, false, None);
        let st = recognition(Some(&off), "", Some(&measured("", 40, 4, 0)));
        assert!(st.ready, "{st:?}");
        // Declared on, but numbers do not arrive: the measured finding.
        let on = settings(Formal, true, None);
        let st = recognition(Some(&on), "", Some(&measured("", 40, 30, 0)));
        assert_eq!(codes(&st), vec![(CallsWithoutNumber, String::new())]);
        // Too few calls: the declaration alone, and a note that says so.
        let st = recognition(Some(&off), "", Some(&measured("", 19, 19, 0)));
        assert_eq!(codes(&st), vec![(CallerIdNotTransmitted, String::new())]);
        assert!(
            st.measured_note.starts_with("only 19 calls"),
            "{}",
            st.measured_note
        );
        // The conversation style is not measured.
        let informal = settings(Informal, true, None);
        let st = recognition(Some(&informal), "", Some(&measured("", 40, 0, 0)));
        assert_eq!(
            codes(&st),
            vec![(ConversationStyleNotFormal, String::new())]
        );
    }

    #[test]
    fn own_numbers_are_read_in_the_resulting_region_and_checked() {
        let raw = RawCallHandling {
            phone_region: "AT".into(),
            own_numbers: vec!["01 234567".into(), "+49 30 1234567".into()],
            ..Default::default()
        };
        let de = Region::germany();
        let mask = [Field::PhoneRegion, Field::OwnNumbers];
        let p = CallHandlingPatch::parse(&raw, &mask, &de, "call_handling").unwrap();
        let mut s = CallHandling::initial("a", de, Utc::now());
        p.apply(&mut s).unwrap();
        let e164s: Vec<&str> = s.own_numbers.iter().map(|o| o.e164.as_str()).collect();
        assert_eq!(e164s, ["+431234567", "+49301234567"]);
        assert!(s.is_own_number("+49301234567") && !s.is_own_number("+49301234568"));

        let raw = RawCallHandling {
            own_numbers: vec!["030 1234567".into(), "+49301234567".into(), "12".into()],
            ..Default::default()
        };
        let p = CallHandlingPatch::parse(&raw, &[Field::OwnNumbers], &de, "call_handling").unwrap();
        let fields: Vec<String> = p
            .apply(&mut CallHandling::initial("a", de, Utc::now()))
            .unwrap_err()
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(
            fields,
            [
                "call_handling.own_numbers[1]",
                "call_handling.own_numbers[2]"
            ]
        );
    }
}
