//! `callers.v1.CallHandlingService`: the settings that decide whether callers can be found.

use super::{App, account, valid};
use crate::{convert, error};
use callers_domain::Violations;
use callers_domain::call_handling::{
    CallHandling, CallHandlingPatch, Field, FindingCode, RawCallHandling, RawEmployee,
    RecognitionStatus, recognition,
};
use callers_domain::validation::reference;
use callers_proto::v1 as pb;
use callers_proto::v1::call_handling_service_server::CallHandlingService;
use tonic::{Request, Response, Status};

pub struct CallHandlings(pub App);

#[tonic::async_trait]
impl CallHandlingService for CallHandlings {
    async fn get_call_handling(
        &self,
        request: Request<pb::GetCallHandlingRequest>,
    ) -> Result<Response<pb::CallHandling>, Status> {
        let mut v = Violations::new();
        let acc = account(&request, &request.get_ref().account_id, &mut v)?;
        let acc = valid(v, acc)?;
        let settings = self
            .0
            .store
            .get_call_handling(&acc)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(to_proto(&settings)))
    }

    async fn update_call_handling(
        &self,
        request: Request<pb::UpdateCallHandlingRequest>,
    ) -> Result<Response<pb::CallHandling>, Status> {
        let mut v = Violations::new();
        let req = request.get_ref();
        let Some(ch) = &req.call_handling else {
            v.add("call_handling", "is required");
            return Err(error::invalid(v));
        };
        // The account is named inside the resource.
        let mut account_violations = Violations::new();
        let acc = account(&request, &ch.account_id, &mut account_violations)?;
        for x in account_violations.0 {
            v.add("call_handling.account_id", x.description);
        }
        let mask = update_mask(req.update_mask.as_ref(), &mut v);
        let patch = mask.and_then(|mask| {
            match CallHandlingPatch::parse(&raw(ch), &mask, &self.0.default_region, "call_handling")
            {
                Ok(p) => Some(p),
                Err(e) => {
                    v.0.extend(e.0);
                    None
                }
            }
        });
        let etag = [req.etag.as_str(), ch.etag.as_str()]
            .into_iter()
            .find(|e| !e.is_empty());
        let (acc, patch) = valid(v, acc.zip(patch))?;
        let settings = self
            .0
            .store
            .update_call_handling(
                &acc,
                &patch,
                etag,
                &self.0.default_region,
                self.0.clock.now(),
            )
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(to_proto(&settings)))
    }

    async fn check_caller_recognition(
        &self,
        request: Request<pb::CheckCallerRecognitionRequest>,
    ) -> Result<Response<pb::RecognitionStatus>, Status> {
        let mut v = Violations::new();
        let acc = account(&request, &request.get_ref().account_id, &mut v)?;
        let employee = v.check(
            "employee_id",
            reference(&request.get_ref().employee_id, false),
        );
        let (acc, employee) = valid(v, acc.zip(employee))?;
        let settings = self
            .0
            .store
            .call_handling_for_employee(&acc, &employee)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(recognition_status(&recognition(
            settings.as_ref(),
            &employee,
        ))))
    }
}

/// Mask paths to fields; an empty mask means every field, as the contract says.
fn update_mask(mask: Option<&prost_types::FieldMask>, v: &mut Violations) -> Option<Vec<Field>> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        return Some(Field::ALL.to_vec());
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, p) in paths.iter().enumerate() {
        match Field::from_path(p) {
            Some(f) if !out.contains(&f) => out.push(f),
            Some(_) => {}
            None => {
                ok = false;
                v.add(
                    format!("update_mask.paths[{i}]"),
                    "is not a writable field of CallHandling",
                );
            }
        }
    }
    ok.then_some(out)
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
    }
}

fn to_proto(s: &CallHandling) -> pb::CallHandling {
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
        update_time: Some(convert::timestamp(s.update_time)),
    }
}

/// Also the `recognition` of every `IdentifyCaller` response.
pub(crate) fn recognition_status(s: &RecognitionStatus) -> pb::RecognitionStatus {
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
                } as i32,
                employee_id: f.employee_id.clone(),
                message: f.message.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_paths() {
        let mut v = Violations::new();
        assert_eq!(update_mask(None, &mut v), Some(Field::ALL.to_vec()));
        let mask = prost_types::FieldMask {
            paths: vec!["employees".into(), "etag".into()],
        };
        assert_eq!(update_mask(Some(&mask), &mut v), None);
        assert_eq!(v.0[0].field, "update_mask.paths[1]");
    }
}
