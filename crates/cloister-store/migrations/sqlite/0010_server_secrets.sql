-- server secrets shared by replicas (private material wrapped by the external KEK)
CREATE TABLE signing_keys (
   issuer TEXT NOT NULL,
   created INTEGER NOT NULL,
   wrapped BLOB NOT NULL,
   PRIMARY KEY (issuer, created)
) STRICT;
CREATE TABLE secrets (
   name TEXT PRIMARY KEY,
   value BLOB NOT NULL
) STRICT;
