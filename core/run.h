/* run.h -- `storepulse run`: the pipeline daemon (consume, decode, window,
 * commit to Redis, dead-letter). */
#ifndef SP_RUN_H
#define SP_RUN_H

int sp_run_main(int argc, char **argv);
int sp_check_config_main(int argc, char **argv);

#endif
