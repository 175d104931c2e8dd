"""Static web app files (index.html, app.js, style.css), served by the local stack or S3."""
