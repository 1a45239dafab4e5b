"""Reference consumer for the benchmark: the seed design's approach in Python.

confluent-kafka + pymongo, one message at a time: parse the Debezium envelope, call the handler,
one MongoDB write per message, commit after each write. It is the baseline pipedemo's consumer is
compared with (scripts/bench.sh); it is not part of the product.

usage: reference_consumer.py BOOTSTRAP TOPIC GROUP MONGODB_URI DATABASE EXPECTED
prints one JSON line: {"messages": n, "seconds": s, "rate": n/s}
"""

import json
import sys
import time

from confluent_kafka import Consumer
from pymongo import MongoClient


def handle(db, row, payload):
    event_type = row["event_type"]
    aggregate_id = row["aggregate_id"]
    meta = {"source_event_id": row["event_id"], "created_at": row["created_at"]}
    if event_type == "UserCreated":
        db.users.update_one(
            {"_id": aggregate_id},
            {"$setOnInsert": {
                "email": payload["email"], "username": payload["username"],
                "first_name": payload["first_name"], "last_name": payload["last_name"],
                "profile": {"bio": payload.get("bio")}, "metadata": meta,
                "allowed_users": [aggregate_id]}},
            upsert=True)
    elif event_type == "ActivityCreated":
        db.activities.update_one(
            {"_id": aggregate_id},
            {"$setOnInsert": {
                "title": payload["title"], "creator_id": payload["creator_user_id"],
                "max_participants": payload["max_participants"],
                "participants": {"count": 0, "list": []}, "metadata": meta,
                "allowed_users": [payload["creator_user_id"]]}},
            upsert=True)
    elif event_type == "ParticipantJoined":
        db.activities.update_one(
            {"_id": aggregate_id, "participants.list.source_event_id": {"$ne": row["event_id"]}},
            {"$push": {"participants.list": {"user_id": payload["user_id"], "source_event_id": row["event_id"]}},
             "$inc": {"participants.count": 1},
             "$addToSet": {"allowed_users": payload["user_id"]}})


def main():
    bootstrap, topic, group, uri, database, expected = sys.argv[1:7]
    expected = int(expected)
    db = MongoClient(uri)[database]
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    n = 0
    start = None
    idle_since = time.time()
    while n < expected:
        msg = consumer.poll(0.5)
        if msg is None:
            if time.time() - idle_since > 60:
                break
            continue
        if msg.error():
            continue
        idle_since = time.time()
        if start is None:
            start = time.time()
        if msg.value() is None:
            continue
        env = json.loads(msg.value())
        row = env.get("after")
        if env.get("op") == "c" and row:
            handle(db, row, json.loads(row["payload"]))
        consumer.commit(message=msg, asynchronous=False)
        n += 1
    seconds = time.time() - (start or time.time())
    consumer.close()
    print(json.dumps({"messages": n, "seconds": seconds, "rate": n / seconds if seconds else 0}))


if __name__ == "__main__":
    main()
