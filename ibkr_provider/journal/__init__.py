"""The trade journal: every plan, approval decision, order, status change and fill, appended to
a table in a database the user names, kept after Airflow's metadata cleanup."""
