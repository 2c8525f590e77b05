//! The sync queue: SQS through the standard SDK (`AWS_ENDPOINT_URL_SQS` points it at a local
//! emulator). The dispatcher sends one message per consent; Lambda's event source mapping (or
//! the local poller) hands them to the worker in batches.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures_util::{StreamExt, stream};
use mongodb::bson::oid::ObjectId;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// SQS takes at most ten entries per `SendMessageBatch`.
pub const MAX_BATCH: usize = 10;

/// One consent to sync under one scheduled run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncMessage {
    #[serde(rename = "runId")]
    pub run_id: ObjectId,
    #[serde(rename = "consentId")]
    pub consent_id: ObjectId,
}

impl SyncMessage {
    pub fn to_body(&self) -> String {
        serde_json::json!({"runId": self.run_id.to_hex(), "consentId": self.consent_id.to_hex()})
            .to_string()
    }

    /// Reads a message body; anything else is a poison message.
    pub fn parse(body: &str) -> Result<Self, AppError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wire {
            #[serde(rename = "runId")]
            run_id: String,
            #[serde(rename = "consentId")]
            consent_id: String,
        }
        let wire: Wire = serde_json::from_str(body)
            .map_err(|e| AppError::BadRequest(format!("not a sync message: {e}")))?;
        let id = |v: &str, name: &str| {
            ObjectId::parse_str(v)
                .map_err(|_| AppError::BadRequest(format!("{name} is not an ObjectId")))
        };
        Ok(SyncMessage {
            run_id: id(&wire.run_id, "runId")?,
            consent_id: id(&wire.consent_id, "consentId")?,
        })
    }
}

#[derive(Clone)]
pub struct SyncQueue {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
}

impl SyncQueue {
    /// The queue named by `SYNC_QUEUE_URL`, if set.
    pub async fn from_env() -> Option<Self> {
        let url = std::env::var("SYNC_QUEUE_URL")
            .ok()
            .filter(|u| !u.is_empty())?;
        let config = aws_config::load_from_env().await;
        Some(SyncQueue {
            client: aws_sdk_sqs::Client::new(&config),
            url,
        })
    }

    /// Sends every message, `MAX_BATCH` to a request and `in_flight` requests at a time.
    /// Entries SQS refuses are sent once more; returns the messages that still failed.
    pub async fn send_all(
        &self,
        messages: &[SyncMessage],
        in_flight: usize,
    ) -> Result<Vec<SyncMessage>, AppError> {
        let results: Vec<Result<Vec<SyncMessage>, AppError>> =
            stream::iter(messages.chunks(MAX_BATCH))
                .map(|chunk| async move {
                    let failed = self.send_batch(chunk).await?;
                    if failed.is_empty() {
                        return Ok(failed);
                    }
                    self.send_batch(&failed).await
                })
                .buffer_unordered(in_flight.max(1))
                .collect()
                .await;
        let mut failed = Vec::new();
        for r in results {
            failed.extend(r?);
        }
        Ok(failed)
    }

    /// One `SendMessageBatch`; returns the entries SQS did not accept.
    async fn send_batch(&self, chunk: &[SyncMessage]) -> Result<Vec<SyncMessage>, AppError> {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(m.to_body())
                    .build()
                    .map_err(|e| AppError::Internal(format!("cannot build an SQS entry: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| AppError::Queue(format!("SendMessageBatch failed: {}", error_text(&e))))?;
        let mut failed = Vec::new();
        for f in out.failed() {
            tracing::warn!(
                code = f.code(),
                sender_fault = f.sender_fault(),
                "SQS refused an entry"
            );
            if let Some(m) = f.id().parse::<usize>().ok().and_then(|i| chunk.get(i)) {
                failed.push(*m);
            }
        }
        Ok(failed)
    }
}

/// A message taken from the queue by the local poller (Lambda's event source mapping does
/// this on AWS), with the handle that deletes it.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub receive_count: u32,
}

impl SyncQueue {
    /// Creates (or finds) a queue and its dead-letter queue with a redrive policy of
    /// `max_receive_count` deliveries, as the template does on AWS: for the local stack, the
    /// tests and the benchmark. Returns the queue and the dead-letter queue's URL.
    pub async fn create_with_dead_letter_queue(
        client: aws_sdk_sqs::Client,
        name: &str,
        max_receive_count: u32,
        visibility_timeout_seconds: u32,
    ) -> Result<(SyncQueue, String), AppError> {
        use aws_sdk_sqs::types::QueueAttributeName;
        let fail = |what: &str, e: String| AppError::Queue(format!("{what}: {e}"));
        let dlq = client
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .map_err(|e| fail("CreateQueue (dead-letter)", error_text(&e)))?;
        let dlq_url = dlq.queue_url().unwrap_or_default().to_string();
        let attributes = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| fail("GetQueueAttributes", error_text(&e)))?;
        let dlq_arn = attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .unwrap_or_default();
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receive_count.to_string(),
        });
        let queue = client
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout_seconds.to_string(),
            )
            .send()
            .await
            .map_err(|e| fail("CreateQueue", error_text(&e)))?;
        let url = queue.queue_url().unwrap_or_default().to_string();
        Ok((SyncQueue { client, url }, dlq_url))
    }

    /// Up to ten messages, waiting up to `wait_seconds` for the first (long polling).
    pub async fn receive(&self, wait_seconds: i32) -> Result<Vec<Received>, AppError> {
        use aws_sdk_sqs::types::MessageSystemAttributeName;
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(MAX_BATCH as i32)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| AppError::Queue(format!("ReceiveMessage failed: {}", error_text(&e))))?;
        Ok(out
            .messages()
            .iter()
            .map(|m| Received {
                message_id: m.message_id().unwrap_or_default().to_string(),
                receipt_handle: m.receipt_handle().unwrap_or_default().to_string(),
                body: m.body().unwrap_or_default().to_string(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
            })
            .collect())
    }

    /// Deletes handled messages (what the event source mapping does with the ones a batch
    /// response does not name).
    pub async fn delete(&self, handles: &[String]) -> Result<(), AppError> {
        use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
        for chunk in handles.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(h)
                        .build()
                        .map_err(|e| AppError::Internal(format!("cannot build an SQS entry: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    AppError::Queue(format!("DeleteMessageBatch failed: {}", error_text(&e)))
                })?;
        }
        Ok(())
    }

    /// Makes messages visible again at once, so a local poller redelivers failures without
    /// waiting out the visibility timeout. A message no longer in flight under its handle
    /// (its visibility timeout ran out, and another poller has received or deleted it since) is
    /// left alone.
    pub async fn release(&self, handles: &[String]) -> Result<(), AppError> {
        for h in handles {
            let sent = self
                .client
                .change_message_visibility()
                .queue_url(&self.url)
                .receipt_handle(h)
                .visibility_timeout(0)
                .send()
                .await;
            match sent {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error().is_some_and(|e| {
                        e.is_receipt_handle_is_invalid() || e.is_message_not_inflight()
                    }) =>
                {
                    tracing::debug!("a failed message was no longer in flight under its handle");
                }
                Err(e) => {
                    return Err(AppError::Queue(format!(
                        "ChangeMessageVisibility failed: {}",
                        error_text(&e)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Messages waiting and in flight (`ApproximateNumberOfMessages` + `…NotVisible`).
    pub async fn depth(client: &aws_sdk_sqs::Client, url: &str) -> Result<u64, AppError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| {
                AppError::Queue(format!("GetQueueAttributes failed: {}", error_text(&e)))
            })?;
        let get = |k: &A| {
            out.attributes()
                .and_then(|a| a.get(k))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(get(&A::ApproximateNumberOfMessages) + get(&A::ApproximateNumberOfMessagesNotVisible))
    }
}

/// The SQS event Lambda's event source mapping would deliver for these messages.
pub fn lambda_event(queue_arn: &str, received: &[Received]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = received
        .iter()
        .map(|r| {
            let mut m = SqsMessage::default();
            m.message_id = Some(r.message_id.clone());
            m.receipt_handle = Some(r.receipt_handle.clone());
            m.body = Some(r.body.clone());
            m.attributes.insert(
                "ApproximateReceiveCount".into(),
                r.receive_count.to_string(),
            );
            m.event_source = Some("aws:sqs".into());
            m.event_source_arn = Some(queue_arn.to_string());
            m.aws_region = Some("us-east-1".into());
            m
        })
        .collect();
    event
}

/// An SDK error with its service code and message, which `Display` leaves out.
pub fn error_text<E: std::fmt::Debug>(e: &aws_sdk_sqs::error::SdkError<E>) -> String {
    match e {
        aws_sdk_sqs::error::SdkError::ServiceError(s) => format!("{:?}", s.err()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_poison_is_refused() {
        let m = SyncMessage {
            run_id: ObjectId::new(),
            consent_id: ObjectId::new(),
        };
        assert_eq!(SyncMessage::parse(&m.to_body()).unwrap(), m);
        for poison in [
            "",
            "not json",
            "{}",
            r#"{"runId":"x","consentId":"y"}"#,
            r#"{"runId":"65a546ae4a8f64e8f88fb89e","consentId":"65a546ae4a8f64e8f88fb89e","x":1}"#,
            r#"{"runId":{"$ne":null},"consentId":"65a546ae4a8f64e8f88fb89e"}"#,
        ] {
            assert!(SyncMessage::parse(poison).is_err(), "{poison}");
        }
    }
}
