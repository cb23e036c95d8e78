"""What the operators and example DAGs do, as plain Python over the client (no Airflow import):
the portfolio snapshot, the rebalance and DCA plans (checked against what the account can pay
for) and the reports the DAGs print. DAG tasks call these, so the logic is unit-testable and the
DAG files stay a few lines each."""
