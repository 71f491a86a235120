//! Call-handling settings of an account and its employees, and whether callers can be
//! recognised under them (formal conversation style and caller-ID transmission).

use crate::phone::Region;
use chrono::{DateTime, Utc};

/// Codes are those of the contract and the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmployeeOverride {
    pub employee_id: String,
    pub conversation_style: Option<ConversationStyle>,
    pub caller_id_transmission: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallHandling {
    pub account_id: String,
    pub conversation_style: ConversationStyle,
    pub caller_id_transmission: bool,
    pub phone_region: Region,
    pub employees: Vec<EmployeeOverride>,
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
        Some(st) => (st, true),
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
    if style != ConversationStyle::Formal {
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
            conversation_style: style,
            caller_id_transmission: cid,
            phone_region: Region::germany(),
            employees: emp.into_iter().collect(),
            version: 1,
            update_time: Utc::now(),
        }
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
}
