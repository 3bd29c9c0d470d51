"""Developer and test tooling, not part of the services: the dev stack and the launchers of the embedded database
server (``nx-27017``) and the private RabbitMQ node."""
