"""Lab 4 reference solution: lab 3's items API rewritten async, plus a quote endpoint."""
