"""Developer and test tooling, not part of the services (the WMS, TMS and pilot never import it; the ``ewms dev``
CLI commands do): the dev stack (:mod:`ewms_dev.devstack`), the launchers of the ``nx-27017`` database server
(:mod:`ewms_dev.mongo_server`) and of a private RabbitMQ node (:mod:`ewms_dev.broker_node`), and what tests and
benchmarks share: processes and polling (:mod:`ewms_dev.processes`), service environments
(:mod:`ewms_dev.service_env`) and object factories (:mod:`ewms_dev.factories`)."""
