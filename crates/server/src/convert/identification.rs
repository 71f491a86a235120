//! `IdentificationService` requests as commands, and matches back.

use super::call_handling::recognition;
use super::contact;
use callers_domain::call_counts::Measured;
use callers_domain::contact::MAX_NAME_CHARS;
use callers_domain::identification::{Confidence, Evidence, Field, How, MatchKind};
use callers_domain::retention::Retention;
use callers_domain::validation::{reference, text};
use callers_domain::{AccountId, Violations};
use callers_proto::v1 as pb;
use callers_store::identify::CallLookup;

const DEFAULT_MAX_RESULTS: usize = 5;
const MAX_MAX_RESULTS: usize = 20;

pub struct IdentifyCaller {
    pub account: AccountId,
    pub employee_id: String,
    /// As telephony delivers it; the store reads it in the account's region.
    pub caller_number: String,
    pub caller_name: String,
    pub max_results: usize,
}

impl TryFrom<&pb::IdentifyCallerRequest> for IdentifyCaller {
    type Error = Violations;

    fn try_from(req: &pb::IdentifyCallerRequest) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        let employee = v.check("employee_id", reference(&req.employee_id, false));
        let name = v.check("caller_name", text(&req.caller_name, MAX_NAME_CHARS));
        let max = v.check("max_results", max_results(req.max_results));
        let (((account, employee_id), caller_name), max_results) =
            v.finish(account.zip(employee).zip(name).zip(max))?;
        Ok(Self {
            account,
            employee_id,
            caller_number: req.caller_number.clone(),
            caller_name,
            max_results,
        })
    }
}

impl IdentifyCaller {
    /// `measured`: what this replica last read of the calls counted for the employee.
    pub fn response(
        &self,
        found: CallLookup,
        measured: Option<&Measured>,
        retention: Retention,
    ) -> pb::IdentifyCallerResponse {
        let recognition = recognition(found.settings.as_ref(), &self.employee_id, measured);
        pb::IdentifyCallerResponse {
            matches: found
                .ranking
                .matches
                .iter()
                .map(|m| pb::CallerMatch {
                    contact: Some(contact(&m.contact, retention)),
                    matched_by: kind(m.matched_by) as i32,
                    score: m.score,
                    confidence: confidence(m.confidence) as i32,
                    evidence: m.evidence.iter().map(evidence).collect(),
                })
                .collect(),
            ambiguous: found.ranking.ambiguous,
            recognition: Some(recognition),
            own_number: found.own_number,
            suppressed: false,
            normalized_number: found.number.map(|n| n.into_string()).unwrap_or_default(),
        }
    }
}

fn kind(k: MatchKind) -> pb::MatchKind {
    match k {
        MatchKind::PhoneNumber => pb::MatchKind::PhoneNumber,
        MatchKind::Name => pb::MatchKind::Name,
        MatchKind::PhoneNumberAndName => pb::MatchKind::PhoneNumberAndName,
        MatchKind::DirectDial => pb::MatchKind::DirectDial,
    }
}

fn confidence(c: Confidence) -> pb::MatchConfidence {
    match c {
        Confidence::Possible => pb::MatchConfidence::Possible,
        Confidence::Likely => pb::MatchConfidence::Likely,
        Confidence::Certain => pb::MatchConfidence::Certain,
    }
}

fn evidence(e: &Evidence) -> pb::MatchEvidence {
    use pb::match_evidence::{Field as F, How as H};
    pb::MatchEvidence {
        field: match e.field {
            Field::PhoneNumber => F::PhoneNumber,
            Field::FirstName => F::FirstName,
            Field::LastName => F::LastName,
            Field::Company => F::Company,
            Field::Salutation => F::Salutation,
            Field::Title => F::Title,
        } as i32,
        how: match e.how {
            How::Same => H::Same,
            How::SpellingVariant => H::SpellingVariant,
            How::Typo => H::Typo,
            How::SoundsAlike => H::SoundsAlike,
            How::ExactNumber => H::ExactNumber,
            How::DirectDial => H::DirectDial,
            How::Initial => H::Initial,
        } as i32,
        caller_text: e.caller_text.clone(),
        contact_text: e.contact_text.clone(),
    }
}

/// 0 means the default; more than the maximum is capped, as for page sizes.
fn max_results(requested: i32) -> Result<usize, String> {
    match requested {
        n if n < 0 => Err("must not be negative".into()),
        0 => Ok(DEFAULT_MAX_RESULTS),
        n => Ok((n as usize).min(MAX_MAX_RESULTS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_results_default_cap_and_refusal() {
        assert_eq!(max_results(0), Ok(5));
        assert_eq!(max_results(1), Ok(1));
        assert_eq!(max_results(20), Ok(20));
        assert_eq!(max_results(21), Ok(20));
        assert!(max_results(-1).is_err());
    }
}
