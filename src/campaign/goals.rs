//! Goals and analyses (itellico's guide: the Goals and Analyses tabs), and what an AI agent
//! reports about one conversation.
//!
//! A campaign asks questions of every conversation: goals (one primary — at most one active
//! and unarchived at a time — and any number of secondary ones, each with an outcome:
//! achieved, partially achieved, not achieved, unknown) and analyses (custom questions with
//! an answer only). Each question has a type: `yes_no` (a boolean), `open_text` (a string
//! of at most 4000 characters) or `rating` (an integer 1–5). Questions are archived and
//! restored, never deleted; analyses (and goals) can be made inactive without archiving.
//!
//! [`check_result`] checks an agent's report (`POST /v1/attempts/{id}/analysis`) against the
//! campaign's questions; every problem names the list index and the field
//! (`goals[1].value: …`).
//!
//! A contact's primary-goal status is the outcome its latest analysed attempt (latest by
//! start time) gives for the campaign's current primary goal — `unknown` when that report
//! does not mention it — and none while no attempt of it was analysed.
//!
//! What it must not do: touch the store or read the clock (pure data and checks).

use serde::{Deserialize, Serialize};

use super::model::{word_enum, Millis, ModelError};

fn invalid(field: &'static str, reason: impl Into<String>) -> ModelError {
    ModelError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The longest open-text answer, characters.
pub const MAX_OPEN_TEXT: usize = 4000;
/// The longest conversation summary, characters.
pub const MAX_SUMMARY: usize = 20_000;
/// The longest question name and question text, characters.
pub const MAX_QUESTION_NAME: usize = 200;
pub const MAX_QUESTION_TEXT: usize = 4000;

word_enum! {
    /// What a question is: a goal (primary or secondary) or an analysis.
    QuestionKind {
        /// The campaign's main success criterion (at most one active and unarchived).
        Primary = "primary",
        /// Another objective to track (any number).
        Secondary = "secondary",
        /// A custom analysis question (answer only, no outcome).
        Analysis = "analysis",
    }
}

impl QuestionKind {
    pub fn is_goal(self) -> bool {
        self != QuestionKind::Analysis
    }
}

word_enum! {
    /// The answer a question takes.
    QuestionType {
        /// Yes/No: a JSON boolean.
        YesNo = "yes_no" | "yesno" | "boolean",
        /// Free text: a JSON string of at most 4000 characters.
        OpenText = "open_text" | "text",
        /// Rating scale: a JSON integer 1 (low/poor) to 5 (high/excellent).
        Rating = "rating" | "rating_scale",
    }
}

word_enum! {
    /// How far a conversation reached a goal.
    GoalOutcome {
        Achieved = "achieved",
        PartiallyAchieved = "partially_achieved" | "partially" | "partial",
        NotAchieved = "not_achieved",
        Unknown = "unknown",
    }
}

/// A goal or analysis question as an admin writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionSpec {
    pub kind: QuestionKind,
    pub name: String,
    /// The question the agent answers ("Did the contact book a demo?").
    pub question: String,
    #[serde(rename = "type")]
    pub question_type: QuestionType,
    /// Inactive questions are kept but not asked (no results are taken for them).
    pub active: bool,
}

impl QuestionSpec {
    /// Checks the name and the question text.
    pub fn validate(&self) -> Result<(), ModelError> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        if name.chars().count() > MAX_QUESTION_NAME {
            return Err(invalid(
                "name",
                format!("longer than {MAX_QUESTION_NAME} characters"),
            ));
        }
        if self.question.chars().count() > MAX_QUESTION_TEXT {
            return Err(invalid(
                "question",
                format!("longer than {MAX_QUESTION_TEXT} characters"),
            ));
        }
        Ok(())
    }
}

/// A stored question (goal or analysis) of a campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    pub id: i64,
    pub campaign_id: i64,
    #[serde(flatten)]
    pub spec: QuestionSpec,
    /// Archived questions are out of the tabs and take no results (restore brings them
    /// back).
    pub archived: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Question {
    /// Active and not archived: results are taken for it.
    pub fn is_live(&self) -> bool {
        self.spec.active && !self.archived
    }
}

/// One goal of an agent's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoalResult {
    pub goal_id: i64,
    pub outcome: GoalOutcome,
    /// The answer to the goal's question (checked against its type); may be absent.
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

/// One analysis of an agent's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisResult {
    pub analysis_id: i64,
    pub value: serde_json::Value,
}

/// What an agent reports about one conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationResult {
    #[serde(default)]
    pub goals: Vec<GoalResult>,
    #[serde(default)]
    pub analyses: Vec<AnalysisResult>,
    #[serde(default)]
    pub summary: String,
}

/// A problem in a report: the path of the field (`goals[1].value`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ResultError {
    pub path: String,
    pub reason: String,
}

fn result_error(path: String, reason: impl Into<String>) -> ResultError {
    ResultError {
        path,
        reason: reason.into(),
    }
}

/// Checks `value` against a question type; `Err` says why it does not fit.
pub fn check_value(question_type: QuestionType, value: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    match (question_type, value) {
        (QuestionType::YesNo, Value::Bool(_)) => Ok(()),
        (QuestionType::YesNo, other) => Err(format!("{other} is not true or false (yes_no)")),
        (QuestionType::OpenText, Value::String(text)) => {
            if text.chars().count() > MAX_OPEN_TEXT {
                Err(format!(
                    "longer than {MAX_OPEN_TEXT} characters (open_text)"
                ))
            } else {
                Ok(())
            }
        }
        (QuestionType::OpenText, other) => Err(format!("{other} is not a string (open_text)")),
        (QuestionType::Rating, Value::Number(n)) => match n.as_i64() {
            Some(1..=5) => Ok(()),
            _ => Err(format!("{n} is not an integer from 1 to 5 (rating)")),
        },
        (QuestionType::Rating, other) => {
            Err(format!("{other} is not an integer from 1 to 5 (rating)"))
        }
    }
}

/// Checks a report against the campaign's questions: every goal id must be a live goal of
/// the campaign and every analysis id a live analysis, each at most once, every value of
/// its question's type, the summary at most [`MAX_SUMMARY`] characters. The first problem
/// is returned, naming its index and field.
pub fn check_result(
    result: &ConversationResult,
    questions: &[Question],
) -> Result<(), ResultError> {
    let find = |id: i64| questions.iter().find(|q| q.id == id);
    for (i, goal) in result.goals.iter().enumerate() {
        let at = |field: &str| format!("goals[{i}].{field}");
        let Some(question) = find(goal.goal_id).filter(|q| q.spec.kind.is_goal()) else {
            return Err(result_error(
                at("goal_id"),
                format!("{} is not a goal of this campaign", goal.goal_id),
            ));
        };
        if !question.is_live() {
            return Err(result_error(
                at("goal_id"),
                format!(
                    "goal {} is {}",
                    goal.goal_id,
                    if question.archived {
                        "archived"
                    } else {
                        "inactive"
                    }
                ),
            ));
        }
        if result.goals[..i].iter().any(|g| g.goal_id == goal.goal_id) {
            return Err(result_error(
                at("goal_id"),
                format!("goal {} is listed twice", goal.goal_id),
            ));
        }
        if let Some(value) = goal.value.as_ref().filter(|v| !v.is_null()) {
            check_value(question.spec.question_type, value)
                .map_err(|reason| result_error(at("value"), reason))?;
        }
    }
    for (i, analysis) in result.analyses.iter().enumerate() {
        let at = |field: &str| format!("analyses[{i}].{field}");
        let Some(question) =
            find(analysis.analysis_id).filter(|q| q.spec.kind == QuestionKind::Analysis)
        else {
            return Err(result_error(
                at("analysis_id"),
                format!(
                    "{} is not an analysis of this campaign",
                    analysis.analysis_id
                ),
            ));
        };
        if !question.is_live() {
            return Err(result_error(
                at("analysis_id"),
                format!(
                    "analysis {} is {}",
                    analysis.analysis_id,
                    if question.archived {
                        "archived"
                    } else {
                        "inactive"
                    }
                ),
            ));
        }
        if result.analyses[..i]
            .iter()
            .any(|a| a.analysis_id == analysis.analysis_id)
        {
            return Err(result_error(
                at("analysis_id"),
                format!("analysis {} is listed twice", analysis.analysis_id),
            ));
        }
        check_value(question.spec.question_type, &analysis.value)
            .map_err(|reason| result_error(at("value"), reason))?;
    }
    if result.summary.chars().count() > MAX_SUMMARY {
        return Err(result_error(
            "summary".into(),
            format!("longer than {MAX_SUMMARY} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn question(id: i64, kind: QuestionKind, question_type: QuestionType) -> Question {
        Question {
            id,
            campaign_id: 1,
            spec: QuestionSpec {
                kind,
                name: format!("q{id}"),
                question: String::new(),
                question_type,
                active: true,
            },
            archived: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn questions() -> Vec<Question> {
        vec![
            question(1, QuestionKind::Primary, QuestionType::YesNo),
            question(2, QuestionKind::Secondary, QuestionType::Rating),
            question(3, QuestionKind::Analysis, QuestionType::OpenText),
            Question {
                archived: true,
                ..question(4, QuestionKind::Secondary, QuestionType::YesNo)
            },
        ]
    }

    fn report(value: serde_json::Value) -> ConversationResult {
        serde_json::from_value(value).unwrap()
    }

    fn path(value: serde_json::Value) -> String {
        check_result(&report(value), &questions()).unwrap_err().path
    }

    #[test]
    fn a_good_report_passes() {
        let good = report(json!({
            "goals": [
                {"goal_id": 1, "outcome": "achieved", "value": true},
                {"goal_id": 2, "outcome": "partially_achieved", "value": 4}
            ],
            "analyses": [{"analysis_id": 3, "value": "wants a call back"}],
            "summary": "booked"
        }));
        assert_eq!(check_result(&good, &questions()), Ok(()));
        assert_eq!(good.goals[1].outcome, GoalOutcome::PartiallyAchieved);
    }

    #[test]
    fn values_follow_the_question_type() {
        assert_eq!(
            path(json!({"goals": [{"goal_id": 1, "outcome": "achieved", "value": "yes"}]})),
            "goals[0].value"
        );
        for bad in [json!(0), json!(6), json!(3.5), json!("3")] {
            assert_eq!(
                path(json!({"goals": [
                    {"goal_id": 1, "outcome": "unknown"},
                    {"goal_id": 2, "outcome": "achieved", "value": bad}
                ]})),
                "goals[1].value"
            );
        }
        assert_eq!(
            path(json!({"analyses": [{"analysis_id": 3, "value": "x".repeat(4001)}]})),
            "analyses[0].value"
        );
        assert_eq!(
            path(json!({"analyses": [{"analysis_id": 3, "value": 5}]})),
            "analyses[0].value"
        );
    }

    #[test]
    fn ids_must_be_live_questions_of_the_right_kind_once() {
        assert_eq!(
            path(json!({"goals": [{"goal_id": 3, "outcome": "achieved"}]})),
            "goals[0].goal_id"
        );
        assert_eq!(
            path(json!({"goals": [{"goal_id": 4, "outcome": "achieved"}]})),
            "goals[0].goal_id"
        );
        assert_eq!(
            path(json!({"goals": [
                {"goal_id": 1, "outcome": "achieved"},
                {"goal_id": 1, "outcome": "unknown"}
            ]})),
            "goals[1].goal_id"
        );
        assert_eq!(
            path(json!({"analyses": [{"analysis_id": 1, "value": true}]})),
            "analyses[0].analysis_id"
        );
        assert_eq!(
            path(json!({"summary": "s".repeat(MAX_SUMMARY + 1)})),
            "summary"
        );
    }

    #[test]
    fn outcomes_read_the_guides_words() {
        assert_eq!(
            GoalOutcome::parse("Partially Achieved"),
            Some(GoalOutcome::PartiallyAchieved)
        );
        assert_eq!(
            GoalOutcome::parse("not achieved"),
            Some(GoalOutcome::NotAchieved)
        );
        assert_eq!(
            QuestionType::parse("Rating Scale"),
            Some(QuestionType::Rating)
        );
        assert_eq!(GoalOutcome::parse("maybe"), None);
    }
}
