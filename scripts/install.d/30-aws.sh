# AWS provisioning: xfsprogs, for the test of the role that formats data volumes with XFS (it runs
# on this machine against a loop device). moto and boto3 come with the Python packages.
apt_install xfsprogs
