"""The AWS side: EC2 instance facts, EKS cluster data and the EKS token. The only boto3 users."""
