//! `callers.v1.IdentificationService`: who is calling?

use super::call_handling::recognition_status;
use super::{App, account, valid};
use crate::{convert, error};
use callers_domain::Violations;
use callers_domain::call_handling::recognition;
use callers_domain::contact::MAX_NAME_CHARS;
use callers_domain::validation::{reference, text};
use callers_proto::v1 as pb;
use callers_proto::v1::identification_service_server::IdentificationService;
use callers_store::identify::MatchKind;
use tonic::{Request, Response, Status};

pub struct Identification(pub App);

const DEFAULT_MAX_RESULTS: usize = 5;
const MAX_MAX_RESULTS: usize = 20;

#[tonic::async_trait]
impl IdentificationService for Identification {
    async fn identify_caller(
        &self,
        request: Request<pb::IdentifyCallerRequest>,
    ) -> Result<Response<pb::IdentifyCallerResponse>, Status> {
        let mut v = Violations::new();
        let acc = account(&request, &request.get_ref().account_id, &mut v)?;
        let req = request.get_ref();
        let employee = v.check("employee_id", reference(&req.employee_id, false));
        let name = v.check("caller_name", text(&req.caller_name, MAX_NAME_CHARS));
        let max = v.check("max_results", max_results(req.max_results));
        let (((acc, employee), name), max) = valid(v, acc.zip(employee).zip(name).zip(max))?;

        let found = self
            .0
            .store
            .identify_call(
                &acc,
                &employee,
                &req.caller_number,
                &name,
                max,
                &self.0.default_region,
            )
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(pb::IdentifyCallerResponse {
            matches: found
                .matches
                .iter()
                .map(|m| pb::CallerMatch {
                    contact: Some(convert::contact(&m.contact, self.0.retention)),
                    matched_by: match m.matched_by {
                        MatchKind::PhoneNumber => pb::MatchKind::PhoneNumber,
                        MatchKind::Name => pb::MatchKind::Name,
                        MatchKind::PhoneNumberAndName => pb::MatchKind::PhoneNumberAndName,
                    } as i32,
                    score: m.score,
                })
                .collect(),
            normalized_number: found.number.map(|n| n.into_string()).unwrap_or_default(),
            recognition: Some(recognition_status(&recognition(
                found.settings.as_ref(),
                &employee,
            ))),
        }))
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
