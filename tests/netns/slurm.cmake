# Multi-node Slurm with real training (tests/netns/slurm_test.sh): launch/slurm/train.sbatch as
# shipped (2 nodes x 8 ranks), and 2 x 2 jobs requeued by `scontrol requeue` and by SIGUSR1 that
# resume and match an uninterrupted run bitwise, and the requeue cap (PFT_MAX_REQUEUES).
foreach(case defaults requeue cap)
  add_test(NAME cluster.slurm_${case} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/slurm_test.sh ${case}
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(cluster.slurm_${case} PROPERTIES FIXTURES_REQUIRED netns_cluster TIMEOUT 300)
  list(APPEND netns_tests cluster.slurm_${case})
endforeach()
