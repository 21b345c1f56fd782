// TripNotifier: records that the traveller was told their trip is booked (subscribed to TRIP_BOOKED events).
import { DynamoDBClient, PutItemCommand } from "@aws-sdk/client-dynamodb";

import { noticeItem } from "./notice.mjs";

// The AWS SDK for JavaScript v3 comes with the Node.js 20 runtime; built once per execution environment.
const dynamodb = new DynamoDBClient({});

export const handler = async (event) => {
  for (const record of event.Records) {
    const item = noticeItem(record, new Date().toISOString());
    await dynamodb.send(new PutItemCommand({ TableName: process.env.NOTIFICATIONS_TABLE, Item: item }));
    console.log(JSON.stringify({ message: "traveller notified", tripId: item.tripId.S, eventType: item.eventType.S }));
  }
  return { notified: event.Records.length };
};
