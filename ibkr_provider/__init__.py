"""Apache Airflow provider for the Interactive Brokers (IBKR) Web API.

Importing this package is deliberately cheap: DAG files import operators every few seconds,
so nothing here touches the network, a connection or Airflow's configuration.
"""

__version__ = "0.1.0"
