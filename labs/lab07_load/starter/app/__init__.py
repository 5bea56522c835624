"""Lab 5 reference solution: lab 4's shop API plus orders that publish events to RabbitMQ."""
