"""Lab 5 starter: lab 4's shop API with orders, and a second service, `notifications/`.

Both start: the API answers every lab 4 endpoint and GET /orders/{id}; POST /orders answers
501 until you write it. Look for `TODO(lab 5)`: in `app/orders.py` (commit only after the
broker confirmed the event), `app/broker.py` (the publish itself), and in the notifications
service (`notifications/`), which exits at start until you write its consumer loop.
"""
