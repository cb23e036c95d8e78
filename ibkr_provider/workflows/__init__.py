"""What the example DAGs do, as plain Python over the client (no Airflow import): the rebalance
and DCA plans, checked against what the account can pay for. DAG tasks call these, so the logic
is unit-testable and the DAG files stay a few lines each."""
