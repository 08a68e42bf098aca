"""The Message Batches API: a durable store, and the flow that works a batch off.

The store (`store.py`, SQLite or PostgreSQL) is the source of truth for batches, requests,
attempts and results. `work.py` holds the flow body (one per batch) and the task body (one
per chunk of requests); they run in-process (`executor: local`) or as a Prefect flow run on
an `openrouter-anthropic worker` (`executor: prefect`, `prefect_flows.py`). Nothing in this
package imports Prefect except `prefect_flows.py` and `worker.py`, so the server never pays
for it unless asked to.
"""
