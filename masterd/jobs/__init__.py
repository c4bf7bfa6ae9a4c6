"""The jobs of ganeti-masterd (PROTOCOL.md part 2, "SubmitJob" to "What a job
guarantees"): ``call_many``'s roll-out (:mod:`masterd.fanout`, :mod:`masterd.rollout`)
run in masterd, its records in the store instead of a batch file.

- :mod:`masterd.jobs.journal`: the store as the fan-out's journal;
- :mod:`masterd.jobs.runner`: one job's run, and a resumed one's;
- :mod:`masterd.jobs.service`: SubmitJob, WaitForJob, AbortJob, ListJobs, the resume
  at start, and the expiry of old jobs.
"""
