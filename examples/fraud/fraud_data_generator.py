#!/usr/bin/env python3
"""The R2 SQL tutorial's fraud event generator, pointed at a pipe stream.

Standard library only. Sends EVENTS transactions in batches of 100 to the
stream endpoint (no auth, as the tutorial's stream), occasionally fraudulent,
and prints what was accepted. `--seed` makes the events reproducible;
`--save FILE` writes every accepted event as NDJSON, for checking.

    python3 fraud_data_generator.py [--endpoint URL] [--events N] [--seed S] [--save FILE]
"""

import argparse
import json
import random
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone


def generate_transaction(rng):
    """Generate some random transactions with occasional fraud"""
    high_risk_users = [1001, 1002, 1003, 1004, 1005]
    normal_users = list(range(1006, 2000))
    user_id = rng.choice(high_risk_users + normal_users)
    is_high_risk_user = user_id in high_risk_users

    if rng.random() < 0.05:
        amount = round(rng.uniform(5000, 50000), 2)
    elif rng.random() < 0.03:
        amount = round(rng.uniform(0.01, 1.00), 2)
    else:
        amount = round(rng.uniform(10, 500), 2)

    normal_locations = ["NEW_YORK", "LOS_ANGELES", "CHICAGO", "MIAMI", "SEATTLE", "SAN FRANCISCO"]
    high_risk_locations = ["UNKNOWN_LOCATION", "VPN_EXIT", "MARS", "BAT_CAVE"]
    if is_high_risk_user and rng.random() < 0.3:
        location = rng.choice(high_risk_locations)
    else:
        location = rng.choice(normal_locations)

    normal_merchants = ["GROCERY", "GAS_STATION", "RESTAURANT", "RETAIL"]
    high_risk_merchants = ["GAMBLING", "CRYPTO", "MONEY_TRANSFER", "GIFT_CARDS"]
    if rng.random() < 0.1:
        merchant_category = rng.choice(high_risk_merchants)
    else:
        merchant_category = rng.choice(normal_merchants)

    fraud_score = 0
    if amount > 2000:
        fraud_score += 0.4
    if amount < 1:
        fraud_score += 0.3
    if location in high_risk_locations:
        fraud_score += 0.5
    if merchant_category in high_risk_merchants:
        fraud_score += 0.3
    if is_high_risk_user:
        fraud_score += 0.2
    is_fraud = rng.random() < min(fraud_score * 0.3, 0.8)

    base_time = datetime.now(timezone.utc)
    if is_fraud and rng.random() < 0.4:
        transaction_time = base_time.replace(hour=rng.randint(0, 5))
    else:
        transaction_time = base_time - timedelta(hours=rng.randint(0, 168))

    return {
        "transaction_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "user_id": user_id,
        "amount": amount,
        "transaction_timestamp": transaction_time.isoformat(),
        "location": location,
        "merchant_category": merchant_category,
        "is_fraud": bool(is_fraud),
    }


def send_batch(endpoint, batch):
    request = urllib.request.Request(
        endpoint,
        data=json.dumps(batch).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="http://127.0.0.1:8080/v1/streams/raw_events_stream")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--save", help="write the accepted events here, as NDJSON")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    events = [generate_transaction(rng) for _ in range(args.events)]
    fraud = sum(1 for e in events if e["is_fraud"])
    print(f"Generated {len(events)} events ({fraud} fraud, {fraud / max(len(events), 1) * 100:.1f}%)")

    sent, failed = [], 0
    for i in range(0, len(events), args.batch_size):
        batch = events[i : i + args.batch_size]
        status, body = send_batch(args.endpoint, batch)
        if status == 200:
            sent.extend(batch)
        else:
            failed += len(batch)
            print(f"Failed to send batch: {status} - {body}")
    print(f"Events sent: {len(sent)}, fraud events: {sum(1 for e in sent if e['is_fraud'])}, failed: {failed}")
    if args.save:
        with open(args.save, "w") as f:
            for e in sent:
                f.write(json.dumps(e) + "\n")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
