"""rtexport's DICOM network stack: what the sender and the storage commitment listener stand on.

Layers, each using only the ones above it:

- :mod:`.pdu` — the PDU codec (PS3.8 9.3): records ↔ bytes, no I/O.
- :mod:`.association` — the association: the PS3.8 9.2 state machine as a table, the ARTIM, ACSE and DIMSE
  timers on an injectable clock, the transport (TCP or TLS, Nagle off) and the Maximum Length we enforce on
  what we receive. One thread drives it; PDUs are read when that thread waits for one.
- :mod:`.dimse` — DIMSE messages (PS3.7): command sets, message assembly from PDV fragments, the status
  tables of ``pynetdicom.status``, and the streaming path that sends a stored file's data set straight from
  the file into P-DATA-TF PDUs.
- :mod:`.commitment` — Storage Commitment Push Model as SCU: the N-ACTION request and a small acceptor for
  the server's N-EVENT-REPORT, on the same association code as the sender.

:mod:`rtexport.net.send` is the sender on top (C-ECHO, C-STORE over parallel associations, commitment).

Why not pynetdicom for all of it: its reactor thread, queues and per-PDU state-machine events cost too much
when sending stored files on two cores. ``benchmarks/bench_send.py`` measures both in the same run, pynetdicom
tuned with TCP_NODELAY and chunked data set sends: to Orthanc, pynetdicom reached 0.65–0.85x DCMTK storescu on
one association and 1.0–1.25x on two, rtexport 1.0–1.4x and 1.6x; sending alone (to ``storescp --ignore``)
pynetdicom does about 0.2 GB/s, rtexport 1.2 GB/s (0.7 GB/s hashing what it sends). A blocking requestor needs
none of that machinery: the calling thread owns the socket, the data set goes from the file to the socket with
one copy and each response is one small read. pynetdicom stays a dependency for its status tables and as a
reference peer in the tests.
"""
