//! `CallHandlingService` requests as commands, and settings and recognition status back.

use super::{EmptyMask, etag, timestamp, update_mask};
use callers_domain::call_counts::{CallCounts, Measured, WINDOW_DAYS};
use callers_domain::call_handling::{
    self, CallHandling, CallHandlingPatch, FindingCode, RawCallHandling, RawEmployee,
    RecognitionStatus,
};
use callers_domain::phone::Region;
use callers_domain::validation::reference;
use callers_domain::{AccountId, Violations};
use callers_proto::v1 as pb;

pub struct GetCallHandling {
    pub account: AccountId,
}

impl TryFrom<&pb::GetCallHandlingRequest> for GetCallHandling {
    type Error = Violations;

    fn try_from(req: &pb::GetCallHandlingRequest) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        Ok(Self {
            account: v.finish(account)?,
        })
    }
}

pub struct UpdateCallHandling {
    pub account: AccountId,
    pub patch: CallHandlingPatch,
    etag: Option<String>,
}

impl UpdateCallHandling {
    /// [`parse`](Self::parse) with the server's default region.
    pub fn parser(
        default_region: &Region,
    ) -> impl Fn(&pb::UpdateCallHandlingRequest) -> Result<Self, Violations> + '_ {
        move |req| Self::parse(req, default_region)
    }

    /// An empty `phone_region` is `default_region`, the server's, as the contract says.
    pub fn parse(
        req: &pb::UpdateCallHandlingRequest,
        default_region: &Region,
    ) -> Result<Self, Violations> {
        let Some(ch) = &req.call_handling else {
            return Err(Violations::single("call_handling", "is required"));
        };
        let mut v = Violations::new();
        // The account is named inside the resource.
        let account = v.check("call_handling.account_id", AccountId::parse(&ch.account_id));
        // An empty mask means every field, as the contract says.
        let mask = update_mask::<call_handling::Field>(
            req.update_mask.as_ref(),
            EmptyMask::AllFields,
            &mut v,
        );
        let patch = mask.and_then(|mask| {
            let raw = raw(ch);
            v.absorb(CallHandlingPatch::parse(
                &raw,
                &mask,
                default_region,
                "call_handling",
            ))
        });
        let etag = etag(&req.etag, Some(&ch.etag));
        let (account, patch) = v.finish(account.zip(patch))?;
        Ok(Self {
            account,
            patch,
            etag,
        })
    }
}

impl UpdateCallHandling {
    /// The etag the write is conditional on, if any.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }
}

pub struct CheckCallerRecognition {
    pub account: AccountId,
    pub employee_id: String,
}

impl TryFrom<&pb::CheckCallerRecognitionRequest> for CheckCallerRecognition {
    type Error = Violations;

    fn try_from(req: &pb::CheckCallerRecognitionRequest) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        let employee_id = v.check("employee_id", reference(&req.employee_id, false));
        let (account, employee_id) = v.finish(account.zip(employee_id))?;
        Ok(Self {
            account,
            employee_id,
        })
    }
}

impl CheckCallerRecognition {
    pub fn response(
        &self,
        settings: Option<&CallHandling>,
        counts: CallCounts,
    ) -> pb::RecognitionStatus {
        let measured = Measured {
            employee_id: self.employee_id.clone(),
            counts,
        };
        recognition(settings, &self.employee_id, Some(&measured))
    }
}

fn raw(ch: &pb::CallHandling) -> RawCallHandling {
    RawCallHandling {
        conversation_style: ch.conversation_style,
        caller_id_transmission: ch.caller_id_transmission,
        phone_region: ch.phone_region.clone(),
        employees: ch
            .employees
            .iter()
            .map(|e| RawEmployee {
                employee_id: e.employee_id.clone(),
                conversation_style: e.conversation_style,
                caller_id_transmission: e.caller_id_transmission,
            })
            .collect(),
        time_zone: ch.time_zone.clone(),
        own_numbers: ch.own_numbers.iter().map(|o| o.number.clone()).collect(),
        call_note_retention_days: ch.call_note_retention_days,
    }
}

pub fn settings(s: &CallHandling) -> pb::CallHandling {
    pb::CallHandling {
        account_id: s.account_id.clone(),
        conversation_style: s.conversation_style.map_or(0, |st| st.code()),
        caller_id_transmission: s.caller_id_transmission,
        phone_region: s.phone_region.as_str().to_owned(),
        employees: s
            .employees
            .iter()
            .map(|e| pb::EmployeeCallHandling {
                employee_id: e.employee_id.clone(),
                conversation_style: e.conversation_style.map_or(0, |st| st.code()),
                caller_id_transmission: e.caller_id_transmission,
            })
            .collect(),
        etag: s.etag(),
        update_time: Some(timestamp(s.update_time)),
        time_zone: s.time_zone.as_str().to_owned(),
        call_note_retention_days: s.call_note_retention_days.map_or(0, |d| d as i32),
        own_numbers: s
            .own_numbers
            .iter()
            .map(|o| pb::OwnNumber {
                number: o.number.clone(),
                e164: o.e164.as_str().to_owned(),
            })
            .collect(),
    }
}

/// What keeps callers of `employee_id` from being recognised under `settings`; also the
/// `recognition` of every `IdentifyCaller` response.
pub(crate) fn recognition(
    settings: Option<&CallHandling>,
    employee_id: &str,
    measured: Option<&Measured>,
) -> pb::RecognitionStatus {
    status(&call_handling::recognition(settings, employee_id, measured))
}

fn status(s: &RecognitionStatus) -> pb::RecognitionStatus {
    pb::RecognitionStatus {
        ready: s.ready,
        findings: s
            .findings
            .iter()
            .map(|f| pb::Finding {
                code: match f.code {
                    FindingCode::ConversationStyleNotFormal => {
                        pb::FindingCode::ConversationStyleNotFormal
                    }
                    FindingCode::CallerIdNotTransmitted => pb::FindingCode::CallerIdNotTransmitted,
                    FindingCode::SettingsUnknown => pb::FindingCode::SettingsUnknown,
                    FindingCode::CallsWithoutNumber => pb::FindingCode::CallsWithoutNumber,
                    FindingCode::CallsFromOwnNumber => pb::FindingCode::CallsFromOwnNumber,
                } as i32,
                employee_id: f.employee_id.clone(),
                message: f.message.clone(),
                share: f.share.unwrap_or_default(),
            })
            .collect(),
        measurement: s.measured.as_ref().map(|m| pb::CallMeasurement {
            employee_id: m.employee_id.clone(),
            window_days: WINDOW_DAYS as i32,
            calls: m.counts.calls,
            calls_without_number: m.counts.without_number,
            calls_from_own_number: m.counts.own_number,
            calls_number_found: m.counts.number_found,
            enough_calls: m.counts.enough(),
            message: s.measured_note.clone(),
        }),
    }
}
