"""imgproc: the course capstone, an asynchronous image-processing service.

FastAPI accepts an upload, stores it by content hash, writes a job row to PostgreSQL and sends
only the job id through Redis to a Celery worker, which processes the image with Pillow.
"""
