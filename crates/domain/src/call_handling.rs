//! Call-handling settings of an account and its employees, and whether callers can be
//! recognised under them (formal conversation style and caller-ID transmission).

use crate::phone::Region;
use crate::validation::{Violations, reference};
use chrono::{DateTime, Utc};

/// Bounds the employee list, which is read and written as a whole.
pub const MAX_EMPLOYEES: usize = 1_000;

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
    pub version: i64,
    pub update_time: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingCode {
    ConversationStyleNotFormal = 1,
    CallerIdNotTransmitted = 2,
    SettingsUnknown = 3,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub code: FindingCode,
    /// Empty when the finding is about the account's own setting.
    pub employee_id: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecognitionStatus {
    pub ready: bool,
    pub findings: Vec<Finding>,
}

/// The effective settings for one employee (their override, else the account's) and what
/// keeps the secretarial service from finding callers under them.
pub fn recognition(settings: Option<&CallHandling>, employee_id: &str) -> RecognitionStatus {
    let Some(s) = settings else {
        return RecognitionStatus {
            ready: false,
            findings: vec![Finding {
                code: FindingCode::SettingsUnknown,
                employee_id: String::new(),
                message: "no call-handling settings are stored for this account, so it is \
                          unknown whether callers can be recognised"
                    .into(),
            }],
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
        });
    }
    RecognitionStatus {
        ready: findings.is_empty(),
        findings,
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
            version: 0,
            update_time: now,
        }
    }

    pub fn etag(&self) -> String {
        crate::contact::etag(self.version)
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
            }
        }
        v.into_result(p)
    }

    pub fn apply(&self, s: &mut CallHandling) {
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
    }
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
        let s = recognition(None, "e1");
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
                        let st = recognition(Some(&s), "e1");
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
                        let other = recognition(Some(&s), "e2");
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
        let st = recognition(Some(&s), "");
        assert!(!st.ready);
        assert_eq!(
            codes(&st),
            vec![(ConversationStyleNotFormal, String::new())]
        );
        let initial = CallHandling::initial("a", Region::germany(), Utc::now());
        assert_eq!(
            codes(&recognition(Some(&initial), "e1")),
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
        let mut all = recognition(Some(&s), "e1").findings;
        all.extend(recognition(Some(&s), "e2").findings);
        all.extend(recognition(None, "").findings);
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
        };
        let de = Region::germany();
        let p = CallHandlingPatch::parse(&raw, &[Field::PhoneRegion], &de, "ch").unwrap();
        let mut s = CallHandling::initial("a", de, Utc::now());
        p.apply(&mut s);
        assert_eq!(s.phone_region.as_str(), "AT");
        assert_eq!(s.conversation_style, None);
        assert!(s.employees.is_empty());

        let p = CallHandlingPatch::parse(&raw, &Field::ALL, &de, "ch").unwrap();
        p.apply(&mut s);
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
}
