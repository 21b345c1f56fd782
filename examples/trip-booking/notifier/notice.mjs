// What the notifier records for one SNS record: kept apart from the handler so it runs without the AWS SDK.

/**
 * The DynamoDB item that says the trip's traveller was notified of this SNS record's event.
 * @param {object} record one entry of an SNS event's Records
 * @param {string} notifiedAt ISO 8601 time of the notification
 */
export function noticeItem(record, notifiedAt) {
  const sns = record.Sns;
  const message = JSON.parse(sns.Message);
  if (typeof message.tripId !== "string" || message.tripId === "") {
    throw new TypeError(`SNS message ${sns.MessageId} names no tripId`);
  }
  // The event type travels as a message attribute (the subscription's filter policy reads it too).
  const eventType = sns.MessageAttributes?.eventType?.Value ?? "UNKNOWN";
  return {
    tripId: { S: message.tripId },
    status: { S: "NOTIFIED" },
    eventType: { S: eventType },
    traveller: { S: String(message.traveller ?? "") },
    messageId: { S: sns.MessageId },
    notifiedAt: { S: notifiedAt },
  };
}
