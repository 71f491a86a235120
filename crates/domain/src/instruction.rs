//! Typed handling instructions: what telephony and the agent's screen can act on beside the
//! free-text handling instruction, and the rules a list of them must satisfy.

use crate::validation::{Violations, reference};

/// At most one instruction of each type.
pub const MAX_INSTRUCTIONS: usize = 4;

/// One typed instruction. Codes are those of the contract (`InstructionType`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Instruction {
    /// Put the caller through to this employee.
    PutThrough { employee_id: String },
    /// This employee is responsible for the caller.
    ResponsibleEmployee { employee_id: String },
    /// Family, friends: the call is taken, but nothing about the caller is written down.
    NoDataCapture,
    /// The agent promises a call back, by this employee (empty: the one the call was for).
    CallBack { employee_id: String },
}

impl Instruction {
    pub fn code(&self) -> i32 {
        match self {
            Instruction::PutThrough { .. } => 1,
            Instruction::ResponsibleEmployee { .. } => 2,
            Instruction::NoDataCapture => 3,
            Instruction::CallBack { .. } => 4,
        }
    }

    /// The employee the instruction names; empty for none.
    pub fn employee_id(&self) -> &str {
        match self {
            Instruction::PutThrough { employee_id }
            | Instruction::ResponsibleEmployee { employee_id }
            | Instruction::CallBack { employee_id } => employee_id,
            Instruction::NoDataCapture => "",
        }
    }
}

/// An instruction as a request carries it.
#[derive(Debug, Clone, Default)]
pub struct RawInstruction {
    pub kind: i32,
    pub employee_id: String,
}

/// Validates a list; `field` is its request path. `PUT_THROUGH` and `RESPONSIBLE_EMPLOYEE`
/// need an employee, `NO_DATA_CAPTURE` takes none, `CALL_BACK` may name one; each type once.
pub fn parse(raw: &[RawInstruction], field: &str) -> Result<Vec<Instruction>, Violations> {
    let mut v = Violations::new();
    if raw.len() > MAX_INSTRUCTIONS {
        v.add(
            field,
            format!(
                "must have at most {MAX_INSTRUCTIONS} entries (one per type), got {}",
                raw.len()
            ),
        );
        return Err(v);
    }
    let mut out: Vec<Instruction> = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let at = |f: &str| format!("{field}[{i}].{f}");
        let employee = |required: bool, v: &mut Violations| {
            v.check(&at("employee_id"), reference(&r.employee_id, required))
        };
        let parsed = match r.kind {
            1 => employee(true, &mut v).map(|employee_id| Instruction::PutThrough { employee_id }),
            2 => employee(true, &mut v)
                .map(|employee_id| Instruction::ResponsibleEmployee { employee_id }),
            3 if r.employee_id.is_empty() => Some(Instruction::NoDataCapture),
            3 => {
                v.add(at("employee_id"), "must be empty for NO_DATA_CAPTURE");
                None
            }
            4 => employee(false, &mut v).map(|employee_id| Instruction::CallBack { employee_id }),
            0 => {
                v.add(at("type"), "is required");
                None
            }
            _ => {
                v.add(at("type"), "unknown instruction type");
                None
            }
        };
        if let Some(p) = parsed {
            if out.iter().any(|o| o.code() == p.code()) {
                v.add(at("type"), "appears more than once in the list");
            } else {
                out.push(p);
            }
        }
    }
    v.into_result(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: i32, employee_id: &str) -> RawInstruction {
        RawInstruction {
            kind,
            employee_id: employee_id.into(),
        }
    }

    fn bad(list: &[RawInstruction]) -> Vec<String> {
        match parse(list, "contact.instructions") {
            Ok(_) => vec![],
            Err(v) => v.into_iter().map(|v| v.field).collect(),
        }
    }

    #[test]
    fn each_type_parses_and_keeps_its_employee() {
        let list = parse(
            &[raw(1, "emp-7"), raw(2, "emp-8"), raw(3, ""), raw(4, "")],
            "i",
        )
        .unwrap();
        assert_eq!(
            list,
            vec![
                Instruction::PutThrough {
                    employee_id: "emp-7".into()
                },
                Instruction::ResponsibleEmployee {
                    employee_id: "emp-8".into()
                },
                Instruction::NoDataCapture,
                Instruction::CallBack {
                    employee_id: String::new()
                },
            ]
        );
    }

    #[test]
    fn bad_entries_name_their_field() {
        assert_eq!(bad(&[raw(1, "")]), ["contact.instructions[0].employee_id"]);
        assert_eq!(bad(&[raw(2, "")]), ["contact.instructions[0].employee_id"]);
        assert_eq!(bad(&[raw(3, "x")]), ["contact.instructions[0].employee_id"]);
        assert_eq!(bad(&[raw(0, "")]), ["contact.instructions[0].type"]);
        assert_eq!(bad(&[raw(9, "")]), ["contact.instructions[0].type"]);
        assert_eq!(
            bad(&[raw(3, ""), raw(3, "")]),
            ["contact.instructions[1].type"]
        );
        assert_eq!(
            bad(&[raw(1, "a\nb")]),
            ["contact.instructions[0].employee_id"]
        );
        let five: Vec<RawInstruction> = (0..5).map(|_| raw(4, "")).collect();
        assert_eq!(bad(&five), ["contact.instructions"]);
    }
}
