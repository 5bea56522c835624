"""Development tools of the capstone, kept out of the production package `imgproc`.

- `launch`: start the API, worker and beat as child processes (`make run`, the demo, the
  benchmark and the tests);
- `samples`: generated images (photo-like ones, a decompression bomb, broken pixel data);
- `faults`: a worker with injected faults (a slow job, a job held mid-flight) for tests.

`imgproc` never imports from here.
"""
